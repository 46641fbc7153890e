#!/usr/bin/env bash
# Fetch KEDA's CustomResourceDefinitions (ScaledObject, TriggerAuthentication, ...)
# from the github.com/kedacore/keda/v2 Go module, so the Kubernetes manifests are
# checked against KEDA's own schema and CEL rules by a real kube-apiserver.
#
# usage: infra/local/build/keda-crds.sh OUTPUT_DIR   e.g. "$CACHE/opt/keda-crds-v2.21.0"
#
# Idempotent: exits 0 at once when OUTPUT_DIR/.version holds the pinned version.
# Downloads one module archive (about 3 MiB) into Go's module cache; builds nothing.
set -euo pipefail

KEDA_MODULE=github.com/kedacore/keda/v2
KEDA_VERSION=v2.21.0

out=${1:?usage: $0 OUTPUT_DIR}
case $out in /*) ;; *) out=$PWD/$out ;; esac
want="keda-crds $KEDA_VERSION (module $KEDA_MODULE@$KEDA_VERSION)"
if [[ -f $out/.version && "$(cat "$out/.version")" == "$want" ]]; then
  echo "keda-crds: $out is up to date ($want)"
  exit 0
fi

GO=${GO:-$(command -v go || echo /usr/local/go/bin/go)}
export GOTOOLCHAIN=local
# Outside any module: `go mod download` then only fetches the named module.
cd "${TMPDIR:-/tmp}"
dir=$(GOFLAGS=-mod=mod "$GO" mod download -json "$KEDA_MODULE@$KEDA_VERSION" |
  sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')
[[ -d $dir/config/crd/bases ]] || { echo "keda-crds: no config/crd/bases in $dir" >&2; exit 1; }

partial=$out.partial.$$
trap 'rm -rf "$partial"' EXIT
mkdir -p "$partial"
cp "$dir"/config/crd/bases/*.yaml "$partial"/
chmod u+w "$partial"/*.yaml
printf '%s\n' "$want" >"$partial/.version"
rm -rf "$out"
mv "$partial" "$out"
echo "keda-crds: $(ls "$out" | wc -l) CRDs in $out ($want)"
