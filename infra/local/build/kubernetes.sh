#!/usr/bin/env bash
# Build a program of Kubernetes (k8s.io/kubernetes/cmd/PROGRAM: kube-apiserver for the
# discovery tests, kubectl for the manifest tests, kubelet for the node tests) from the k8s.io/kubernetes Go module
# with the machine's Go toolchain. kube-apiserver.sh and kubectl.sh call this; both
# programs come from one version, so client and server skew is nil, and the second
# build reuses the first one's module and build caches.
#
# usage: infra/local/build/kubernetes.sh PROGRAM OUTPUT_BINARY
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
# Measured on the 2-core dev machine with empty module and build caches:
# kube-apiserver 15m44s wall (534 s CPU: downloading the modules dominates), peak RSS
# 2.3 GiB (largest single process), a 114 MiB binary; kubectl 6m32s (226 s CPU), 63 s
# once kube-apiserver has filled the caches, a 60 MiB binary. kube-apiserver runs with
# Debian 12's etcd 3.4.23. kubectl carries kustomize (`kubectl kustomize`). kubelet,
# the only program built with cgo (gcc), 10m25s wall (371 s CPU, the machine shared
# with other builds) once kube-apiserver had filled the module cache, peak RSS
# 2.0 GiB, an 88 MiB binary linked against glibc; 12 s again with both caches warm,
# 0.04 s when up to date.
set -euo pipefail

K8S_MODULE=k8s.io/kubernetes
K8S_VERSION=v1.37.2
PROGRAM=${1:?usage: $0 PROGRAM OUTPUT_BINARY}
K8S_PKG=$K8S_MODULE/cmd/$PROGRAM
STAGING_VERSION=v0.${K8S_VERSION#v1.}   # v1.37.2 -> v0.37.2

out=${2:?usage: $0 PROGRAM OUTPUT_BINARY}
case $out in /*) ;; *) out=$PWD/$out ;; esac
stamp=$out.version
want="$PROGRAM $K8S_VERSION (module $K8S_MODULE@$K8S_VERSION, staging $STAGING_VERSION)"

GO=${GO:-$(command -v go || echo /usr/local/go/bin/go)}
# Never let the go command fetch another toolchain; use the machine's Go.
export GOTOOLCHAIN=local
# kubelet needs cgo (upstream builds it with cgo too: its cAdvisor and cgroup code
# read the machine through libc); every other program is a static, CGO-free binary.
case $PROGRAM in
  kubelet) export CGO_ENABLED=1 ;;
  *) export CGO_ENABLED=0 ;;
esac

# The version the binary reports.
reported() {
  case $PROGRAM in
    kubectl) "$out" version --client -o json 2>/dev/null |
               sed -n 's/^[[:space:]]*"gitVersion": "\(.*\)",\{0,1\}$/\1/p' | head -n 1 ;;
    *) "$out" --version 2>/dev/null | sed -n 's/^Kubernetes //p' ;;
  esac
}

if [[ -x $out && -f $stamp && "$(cat "$stamp")" == "$want" && "$(reported)" == "$K8S_VERSION" ]]; then
  echo "$PROGRAM: $out is up to date ($want)"
  exit 0
fi

echo "$PROGRAM: building $want with $("$GO" env GOVERSION) -> $out"
start=$(date +%s)

workdir=$(mktemp -d "${TMPDIR:-/tmp}/ferryman-$PROGRAM-build.XXXXXX")
tmp_out=$out.tmp.$$
trap 'rm -rf "$workdir" "$tmp_out"' EXIT
cd "$workdir"

"$GO" mod init ferryman.local/build/$PROGRAM >/dev/null 2>&1

upstream_gomod=$("$GO" mod download -json "$K8S_MODULE@$K8S_VERSION" |
  sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')
[[ -f $upstream_gomod ]] || { echo "$PROGRAM: cannot locate go.mod of $K8S_MODULE@$K8S_VERSION" >&2; exit 1; }

# The staging modules the kubernetes module requires (at the placeholder v0.0.0).
# Modules that appear only in its replace block (sample-controller, ...) are not
# part of its module graph and need nothing.
mapfile -t staging < <(awk '
  { sub(/\/\/.*/, "") }
  /^require[[:space:]]*\($/ { inblock = 1; next }
  inblock && /^[[:space:]]*\)/ { inblock = 0; next }
  inblock && $2 == "v0.0.0" { print $1 }
' "$upstream_gomod")
(( ${#staging[@]} > 0 )) || { echo "$PROGRAM: found no staging modules in $upstream_gomod" >&2; exit 1; }

# Any other replace directive (not to ./staging) would have to be repeated too.
other_replaces=$(awk '
  { sub(/\/\/.*/, "") }
  /^replace[[:space:]]*\($/ { inblock = 1; next }
  inblock && /^[[:space:]]*\)/ { inblock = 0; next }
  (inblock || /^replace[[:space:]]/) && /=>/ && !/=>[[:space:]]*\.\/staging\/src\// { print }
' "$upstream_gomod")
if [[ -n $other_replaces ]]; then
  echo "$PROGRAM: $K8S_MODULE@$K8S_VERSION has replace directives this script does not repeat:" >&2
  echo "$other_replaces" >&2
  exit 1
fi

edits=(-require="$K8S_MODULE@$K8S_VERSION")
for module in "${staging[@]}"; do
  edits+=(-require="$module@$STAGING_VERSION" -replace="$module=$module@$STAGING_VERSION")
done
echo "$PROGRAM: pointing ${#staging[@]} staging modules at their published $STAGING_VERSION"
"$GO" mod edit "${edits[@]}"
# Resolve the rest of the module graph from the packages the program imports.
"$GO" get "$K8S_PKG@$K8S_VERSION"

# The version variables Kubernetes' own build (hack/lib/version.sh) sets; they feed
# `kube-apiserver --version`, the /version endpoint and `kubectl version`.
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

echo "$PROGRAM: built $out ($(du -h "$out" | cut -f1)) in $(( $(date +%s) - start ))s"
echo "$PROGRAM: $(reported)"
