#!/usr/bin/env bash
# Build KEDA's operator (`keda`) and metrics adapter (`keda-adapter`) from the
# github.com/kedacore/keda/v2 Go module with the machine's Go toolchain, for the test
# that scales a Deployment on real Kafka consumer lag (tests/integration/keda.py).
#
# usage: infra/local/build/keda.sh OUTPUT_DIR   e.g. "$CACHE/bin"
#
# Idempotent: exits 0 at once when OUTPUT_DIR/keda and OUTPUT_DIR/keda-adapter exist,
# their stamp files (NAME.version) match, and each binary's build information names
# the pinned KEDA module version.
#
# The KEDA module carries replace directives (nexus-proto-annotations v0.1.0 to a
# pseudo-version) and an exclude, so `go install pkg@version` refuses it. We build in
# a throwaway module that requires KEDA at the pinned version and repeats those
# directives; they only take effect in the main module.
#
# Measured on the 2-core dev machine, KEDA's modules not yet in the module cache and
# two Kubernetes builds running alongside: 15m45s wall (749 s CPU; `go get` resolving
# and downloading took about 2 min), the operator ready after 14m20s, the adapter
# 85 s later; peak RSS 2.8 GiB; binaries of 169 MiB (keda) and 122 MiB (keda-adapter).
# With module and build caches full, a rebuild takes 32 s; the up-to-date check 0.01 s.
set -euo pipefail

KEDA_MODULE=github.com/kedacore/keda/v2
KEDA_VERSION=v2.21.0

out=${1:?usage: $0 OUTPUT_DIR}
case $out in /*) ;; *) out=$PWD/$out ;; esac
want="keda $KEDA_VERSION (module $KEDA_MODULE@$KEDA_VERSION)"
# binary name -> main package
declare -A programs=([keda]=cmd/operator [keda-adapter]=cmd/adapter)

GO=${GO:-$(command -v go || echo /usr/local/go/bin/go)}
# Never let the go command fetch another toolchain; use the machine's Go.
export GOTOOLCHAIN=local
# Static binaries, no C toolchain needed (KEDA's own images build CGO-free too).
export CGO_ENABLED=0

# The KEDA module version a binary was built from, from its embedded build info.
built_from() {
  "$GO" version -m "$1" 2>/dev/null | awk -v m="$KEDA_MODULE" '($1 == "mod" || $1 == "dep") && $2 == m { print $3 }'
}

up_to_date() {
  local name
  for name in "${!programs[@]}"; do
    [[ -x $out/$name && -f $out/$name.version && "$(cat "$out/$name.version")" == "$want" ]] || return 1
    [[ "$(built_from "$out/$name")" == "$KEDA_VERSION" ]] || return 1
  done
}

if up_to_date; then
  echo "keda: $out/keda and $out/keda-adapter are up to date ($want)"
  exit 0
fi

echo "keda: building $want with $("$GO" env GOVERSION) -> $out"
start=$(date +%s)

workdir=$(mktemp -d "${TMPDIR:-/tmp}/ferryman-keda-build.XXXXXX")
trap 'rm -rf "$workdir"' EXIT
cd "$workdir"
"$GO" mod init ferryman.local/build/keda >/dev/null 2>&1

upstream_gomod=$("$GO" mod download -json "$KEDA_MODULE@$KEDA_VERSION" |
  sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')
[[ -f $upstream_gomod ]] || { echo "keda: cannot locate go.mod of $KEDA_MODULE@$KEDA_VERSION" >&2; exit 1; }

# Repeat KEDA's replace and exclude directives (one-line or block form). A replace to
# a local directory cannot be repeated outside KEDA's repository: refuse it.
edits=(-require="$KEDA_MODULE@$KEDA_VERSION")
while read -r kind line; do
  case $kind in
    replace)
      old=${line%%=>*}; new=${line#*=>}
      read -r old_path old_version <<<"$old"
      read -r new_path new_version <<<"$new"
      if [[ -z ${new_version:-} ]]; then
        echo "keda: cannot repeat a replace to a directory: $line" >&2; exit 1
      fi
      edits+=(-replace="$old_path${old_version:+@$old_version}=$new_path@$new_version") ;;
    exclude)
      read -r ex_path ex_version <<<"$line"
      edits+=(-exclude="$ex_path@$ex_version") ;;
  esac
done < <(awk '
  { sub(/\/\/.*/, "") }
  /^(replace|exclude)[[:space:]]*\($/ { block = $1; next }
  block && /^[[:space:]]*\)/ { block = ""; next }
  block && NF { $1 = $1; print block, $0; next }
  /^(replace|exclude)[[:space:]]/ && !/\($/ { kind = $1; $1 = ""; sub(/^ /, ""); print kind, $0 }
' "$upstream_gomod")
echo "keda: main module directives: ${edits[*]}"
"$GO" mod edit "${edits[@]}"

pkgs=()
for name in "${!programs[@]}"; do pkgs+=("$KEDA_MODULE/${programs[$name]}"); done
# Resolve the rest of the module graph from the packages the programs import.
"$GO" get "${pkgs[@]/%/@$KEDA_VERSION}"

# The version variables KEDA's Makefile sets (logged by both programs at start-up).
ldflags="-s -w -X $KEDA_MODULE/version.Version=${KEDA_VERSION#v}"

mkdir -p "$out"
for name in "${!programs[@]}"; do
  "$GO" build -trimpath -ldflags "$ldflags" -o "$workdir/$name" "$KEDA_MODULE/${programs[$name]}"
  echo "keda: built $name ($(du -h "$workdir/$name" | cut -f1)) after $(( $(date +%s) - start ))s"
done
for name in "${!programs[@]}"; do
  mv -f "$workdir/$name" "$out/$name"
  printf '%s\n' "$want" >"$out/$name.version"
done
echo "keda: built $out/keda and $out/keda-adapter in $(( $(date +%s) - start ))s"
