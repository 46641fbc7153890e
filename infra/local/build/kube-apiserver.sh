#!/usr/bin/env bash
# Build kube-apiserver (the program k8s.io/kubernetes/cmd/kube-apiserver) from the
# k8s.io/kubernetes Go module with the machine's Go toolchain.
#
# usage: infra/local/build/kube-apiserver.sh OUTPUT_BINARY   e.g. "$CACHE/bin/kube-apiserver"
#
# Idempotent: exits 0 at once when OUTPUT_BINARY exists, its stamp file
# OUTPUT_BINARY.version matches, and the binary reports the pinned version.
#
# k8s.io/kubernetes replaces each of its staging modules (k8s.io/api,
# k8s.io/apiserver, ...) with a directory inside its own repository
# (./staging/src/k8s.io/NAME), so `go install pkg@version` refuses it. Each staging
# module is also published on its own as v0.MINOR.PATCH for Kubernetes
# v1.MINOR.PATCH: we build in a throwaway module that points every staging module
# the kubernetes module requires at that published version.
#
# Measured on the 2-core dev machine with empty module and build caches: 15m44s wall
# (534 s CPU: downloading the modules dominates), peak RSS 2.3 GiB (largest single process),
# a 114 MiB binary. Runs with Debian 12's etcd 3.4.23.
set -euo pipefail

K8S_MODULE=k8s.io/kubernetes
K8S_VERSION=v1.37.2
K8S_PKG=$K8S_MODULE/cmd/kube-apiserver
STAGING_VERSION=v0.${K8S_VERSION#v1.}   # v1.37.2 -> v0.37.2

out=${1:?usage: $0 OUTPUT_BINARY}
case $out in /*) ;; *) out=$PWD/$out ;; esac
stamp=$out.version
want="kube-apiserver $K8S_VERSION (module $K8S_MODULE@$K8S_VERSION, staging $STAGING_VERSION)"

GO=${GO:-$(command -v go || echo /usr/local/go/bin/go)}
# Never let the go command fetch another toolchain; use the machine's Go.
export GOTOOLCHAIN=local
# Static binary, no C toolchain needed (upstream builds kube-apiserver CGO-free too).
export CGO_ENABLED=0

if [[ -x $out && -f $stamp && "$(cat "$stamp")" == "$want" &&
      "$("$out" --version 2>/dev/null || true)" == "Kubernetes $K8S_VERSION" ]]; then
  echo "kube-apiserver: $out is up to date ($want)"
  exit 0
fi

echo "kube-apiserver: building $want with $("$GO" env GOVERSION) -> $out"
start=$(date +%s)

workdir=$(mktemp -d "${TMPDIR:-/tmp}/ferryman-kube-apiserver-build.XXXXXX")
tmp_out=$out.tmp.$$
trap 'rm -rf "$workdir" "$tmp_out"' EXIT
cd "$workdir"

"$GO" mod init ferryman.local/build/kube-apiserver >/dev/null 2>&1

upstream_gomod=$("$GO" mod download -json "$K8S_MODULE@$K8S_VERSION" |
  sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')
[[ -f $upstream_gomod ]] || { echo "kube-apiserver: cannot locate go.mod of $K8S_MODULE@$K8S_VERSION" >&2; exit 1; }

# The staging modules the kubernetes module requires (at the placeholder v0.0.0).
# Modules that appear only in its replace block (sample-controller, ...) are not
# part of its module graph and need nothing.
mapfile -t staging < <(awk '
  { sub(/\/\/.*/, "") }
  /^require[[:space:]]*\($/ { inblock = 1; next }
  inblock && /^[[:space:]]*\)/ { inblock = 0; next }
  inblock && $2 == "v0.0.0" { print $1 }
' "$upstream_gomod")
(( ${#staging[@]} > 0 )) || { echo "kube-apiserver: found no staging modules in $upstream_gomod" >&2; exit 1; }

# Any other replace directive (not to ./staging) would have to be repeated too.
other_replaces=$(awk '
  { sub(/\/\/.*/, "") }
  /^replace[[:space:]]*\($/ { inblock = 1; next }
  inblock && /^[[:space:]]*\)/ { inblock = 0; next }
  (inblock || /^replace[[:space:]]/) && /=>/ && !/=>[[:space:]]*\.\/staging\/src\// { print }
' "$upstream_gomod")
if [[ -n $other_replaces ]]; then
  echo "kube-apiserver: $K8S_MODULE@$K8S_VERSION has replace directives this script does not repeat:" >&2
  echo "$other_replaces" >&2
  exit 1
fi

edits=(-require="$K8S_MODULE@$K8S_VERSION")
for module in "${staging[@]}"; do
  edits+=(-require="$module@$STAGING_VERSION" -replace="$module=$module@$STAGING_VERSION")
done
echo "kube-apiserver: pointing ${#staging[@]} staging modules at their published $STAGING_VERSION"
"$GO" mod edit "${edits[@]}"
# Resolve the rest of the module graph from the packages kube-apiserver imports.
"$GO" get "$K8S_PKG@$K8S_VERSION"

# The version variables Kubernetes' own build (hack/lib/version.sh) sets; they feed
# `kube-apiserver --version` and the /version endpoint.
minor=${K8S_VERSION#v1.}; minor=${minor%%.*}
build_date=$("$GO" list -m -f '{{.Time.UTC.Format "2006-01-02T15:04:05Z"}}' "$K8S_MODULE")
ldflags="-s -w"
for vpkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags+=" -X $vpkg.gitVersion=$K8S_VERSION -X $vpkg.gitMajor=1 -X $vpkg.gitMinor=$minor"
  ldflags+=" -X $vpkg.gitTreeState=clean -X $vpkg.buildDate=$build_date"
done

mkdir -p "$(dirname "$out")"
"$GO" build -trimpath -o "$tmp_out" -ldflags "$ldflags" "$K8S_PKG"
mv -f "$tmp_out" "$out"
printf '%s\n' "$want" >"$stamp"

echo "kube-apiserver: built $out ($(du -h "$out" | cut -f1)) in $(( $(date +%s) - start ))s"
"$out" --version
