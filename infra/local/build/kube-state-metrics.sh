#!/usr/bin/env bash
# Build kube-state-metrics (the program of the k8s.io/kube-state-metrics/v2 Go module)
# with the machine's Go toolchain: it turns the objects of a kube-apiserver into
# kube_* series, which the Kubernetes dashboards read. Tests run it against the
# kube-apiserver they start; nothing starts it otherwise.
#
# usage: infra/local/build/kube-state-metrics.sh OUTPUT_BINARY
#
# Go's module and build caches go under the stack home, beside the binary's bin/
# folder (OUTPUT_BINARY/../../go; FERRYMAN_GOPATH overrides), as rw2client.sh does.
#
# Idempotent: exits 0 at once when OUTPUT_BINARY exists, its stamp file
# OUTPUT_BINARY.version matches, and the binary reports the pinned version.
#
# The module has no replace directives, so a plain `go install pkg@version` builds
# it with exactly the upstream dependency versions.
set -euo pipefail

KSM_MODULE=k8s.io/kube-state-metrics/v2
KSM_VERSION=v2.20.0

out=${1:?usage: $0 OUTPUT_BINARY}
case $out in /*) ;; *) out=$PWD/$out ;; esac
stamp=$out.version
want="kube-state-metrics $KSM_VERSION (module $KSM_MODULE@$KSM_VERSION)"

GO=${GO:-$(command -v go || echo /usr/local/go/bin/go)}
export GOTOOLCHAIN=local
export CGO_ENABLED=0
export GOPATH=${FERRYMAN_GOPATH:-$(dirname "$(dirname "$out")")/go}
export GOMODCACHE=$GOPATH/pkg/mod
export GOCACHE=$GOPATH/cache
export GOFLAGS="-modcacherw"

if [[ -x $out && -f $stamp && "$(cat "$stamp")" == "$want" &&
      "$("$out" version 2>&1 || true)" == *"version ${KSM_VERSION#v}"* ]]; then
  echo "kube-state-metrics: $out is up to date ($want)"
  exit 0
fi

echo "kube-state-metrics: building $want with $("$GO" env GOVERSION) -> $out"
start=$(date +%s)
workdir=$(mktemp -d "${TMPDIR:-/tmp}/ferryman-ksm-build.XXXXXX")
tmp_out=$out.tmp.$$
trap 'rm -rf "$workdir" "$tmp_out"' EXIT
cd "$workdir"   # outside any module: `go install pkg@version` uses upstream's go.mod only

# The version the binary reports, as upstream's Makefile stamps it.
GOBIN=$workdir/bin "$GO" install -trimpath \
  -ldflags "-s -w -X github.com/prometheus/common/version.Version=${KSM_VERSION#v}" \
  "$KSM_MODULE@$KSM_VERSION"

mkdir -p "$(dirname "$out")"
cp "$workdir/bin/kube-state-metrics" "$tmp_out"
mv -f "$tmp_out" "$out"
printf '%s\n' "$want" >"$stamp"
echo "kube-state-metrics: built $out ($(du -h "$out" | cut -f1)) in $(( $(date +%s) - start ))s"
