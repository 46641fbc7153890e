#!/usr/bin/env bash
# Build kubectl (the program k8s.io/kubernetes/cmd/kubectl) from the k8s.io/kubernetes
# Go module with the machine's Go toolchain, at the version of the kube-apiserver the
# tests run (kube-apiserver.sh), so client and server skew is nil.
#
# usage: infra/local/build/kubectl.sh OUTPUT_BINARY   e.g. "$CACHE/bin/kubectl"
#
# Idempotent: exits 0 at once when OUTPUT_BINARY exists, its stamp file
# OUTPUT_BINARY.version matches, and the binary reports the pinned version.
#
# The module dance is kube-apiserver.sh's (read its header): k8s.io/kubernetes
# replaces its staging modules with directories of its own repository, so we build
# in a throwaway module that points each of them at its published v0.MINOR.PATCH.
# kubectl carries kustomize (`kubectl kustomize`), so one binary renders the
# manifests and applies them (`apply --server-side --dry-run=server`).
#
# Measured on the 2-core dev machine: 6m32s wall with empty module and build caches
# (226 s CPU; downloads dominate), 63 s when kube-apiserver.sh has filled them;
# peak RSS 0.9 GiB, a 60 MiB binary.
set -euo pipefail

K8S_MODULE=k8s.io/kubernetes
K8S_VERSION=v1.37.2
K8S_PKG=$K8S_MODULE/cmd/kubectl
STAGING_VERSION=v0.${K8S_VERSION#v1.}   # v1.37.2 -> v0.37.2

out=${1:?usage: $0 OUTPUT_BINARY}
case $out in /*) ;; *) out=$PWD/$out ;; esac
stamp=$out.version
want="kubectl $K8S_VERSION (module $K8S_MODULE@$K8S_VERSION, staging $STAGING_VERSION)"

GO=${GO:-$(command -v go || echo /usr/local/go/bin/go)}
export GOTOOLCHAIN=local
export CGO_ENABLED=0

reported() { "$out" version --client -o json 2>/dev/null |
  sed -n 's/^[[:space:]]*"gitVersion": "\(.*\)",\{0,1\}$/\1/p' | head -n 1; }

if [[ -x $out && -f $stamp && "$(cat "$stamp")" == "$want" && "$(reported)" == "$K8S_VERSION" ]]; then
  echo "kubectl: $out is up to date ($want)"
  exit 0
fi

echo "kubectl: building $want with $("$GO" env GOVERSION) -> $out"
start=$(date +%s)

workdir=$(mktemp -d "${TMPDIR:-/tmp}/ferryman-kubectl-build.XXXXXX")
tmp_out=$out.tmp.$$
trap 'rm -rf "$workdir" "$tmp_out"' EXIT
cd "$workdir"

"$GO" mod init ferryman.local/build/kubectl >/dev/null 2>&1

upstream_gomod=$("$GO" mod download -json "$K8S_MODULE@$K8S_VERSION" |
  sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')
[[ -f $upstream_gomod ]] || { echo "kubectl: cannot locate go.mod of $K8S_MODULE@$K8S_VERSION" >&2; exit 1; }

mapfile -t staging < <(awk '
  { sub(/\/\/.*/, "") }
  /^require[[:space:]]*\($/ { inblock = 1; next }
  inblock && /^[[:space:]]*\)/ { inblock = 0; next }
  inblock && $2 == "v0.0.0" { print $1 }
' "$upstream_gomod")
(( ${#staging[@]} > 0 )) || { echo "kubectl: found no staging modules in $upstream_gomod" >&2; exit 1; }

other_replaces=$(awk '
  { sub(/\/\/.*/, "") }
  /^replace[[:space:]]*\($/ { inblock = 1; next }
  inblock && /^[[:space:]]*\)/ { inblock = 0; next }
  (inblock || /^replace[[:space:]]/) && /=>/ && !/=>[[:space:]]*\.\/staging\/src\// { print }
' "$upstream_gomod")
if [[ -n $other_replaces ]]; then
  echo "kubectl: $K8S_MODULE@$K8S_VERSION has replace directives this script does not repeat:" >&2
  echo "$other_replaces" >&2
  exit 1
fi

edits=(-require="$K8S_MODULE@$K8S_VERSION")
for module in "${staging[@]}"; do
  edits+=(-require="$module@$STAGING_VERSION" -replace="$module=$module@$STAGING_VERSION")
done
"$GO" mod edit "${edits[@]}"
"$GO" get "$K8S_PKG@$K8S_VERSION"

# The version variables Kubernetes' own build sets; `kubectl version --client` reads
# them, and kubectl's skew warning compares them with the server's.
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

echo "kubectl: built $out ($(du -h "$out" | cut -f1)) in $(( $(date +%s) - start ))s"
"$out" version --client
