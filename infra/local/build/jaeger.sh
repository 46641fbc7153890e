#!/usr/bin/env bash
# Build Jaeger v2 (the program github.com/jaegertracing/jaeger/cmd/jaeger) from its
# Go module with the machine's Go toolchain.
#
# usage: infra/local/build/jaeger.sh OUTPUT_BINARY     e.g. "$CACHE/bin/jaeger"
#
# Idempotent: exits 0 at once when OUTPUT_BINARY exists, its stamp file
# OUTPUT_BINARY.version matches, and the binary reports the pinned version.
#
# Jaeger tags v1.x and v2.x on the same commits; cmd/jaeger is the v2 binary.
# Jaeger's go.mod has replace directives, so `go install pkg@version` refuses it:
# we build in a throwaway module that repeats those replace directives.
set -euo pipefail

JAEGER_MODULE=github.com/jaegertracing/jaeger
JAEGER_MODULE_VERSION=v1.75.0   # Go module tag
JAEGER_V2_VERSION=v2.12.0       # the v2 tag on the same commit (printed by `jaeger version`)
JAEGER_PKG=$JAEGER_MODULE/cmd/jaeger

out=${1:?usage: $0 OUTPUT_BINARY}
case $out in /*) ;; *) out=$PWD/$out ;; esac
stamp=$out.version
want="jaeger $JAEGER_V2_VERSION (module $JAEGER_MODULE@$JAEGER_MODULE_VERSION)"

GO=${GO:-$(command -v go || echo /usr/local/go/bin/go)}
# Never let the go command fetch another toolchain; use the machine's Go.
export GOTOOLCHAIN=local
# Static binary, no C toolchain needed (upstream release builds are CGO-free too).
export CGO_ENABLED=0

if [[ -x $out && -f $stamp && "$(cat "$stamp")" == "$want" &&
      "$("$out" version 2>/dev/null || true)" == *"\"gitVersion\":\"$JAEGER_V2_VERSION\""* ]]; then
  echo "jaeger: $out is up to date ($want)"
  exit 0
fi

echo "jaeger: building $want with $("$GO" env GOVERSION) -> $out"
start=$(date +%s)

workdir=$(mktemp -d "${TMPDIR:-/tmp}/ferryman-jaeger-build.XXXXXX")
tmp_out=$out.tmp.$$
trap 'rm -rf "$workdir" "$tmp_out"' EXIT
cd "$workdir"

"$GO" mod init ferryman.local/build/jaeger >/dev/null 2>&1

# Repeat the replace directives of Jaeger's own go.mod (both the one-line
# form and the `replace ( ... )` block form).
upstream_gomod=$("$GO" mod download -json "$JAEGER_MODULE@$JAEGER_MODULE_VERSION" |
  sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')
[[ -f $upstream_gomod ]] || { echo "jaeger: cannot locate go.mod of $JAEGER_MODULE@$JAEGER_MODULE_VERSION" >&2; exit 1; }

awk '
  { sub(/\/\/.*/, "") }
  /^replace[[:space:]]*\($/ { inblock = 1; next }
  inblock && /^[[:space:]]*\)/ { inblock = 0; next }
  inblock && /=>/ { print; next }
  /^replace[[:space:]]/ && /=>/ { sub(/^replace[[:space:]]+/, ""); print }
' "$upstream_gomod" |
while read -r -a f; do
  # f: OLD [OLDVER] => NEW [NEWVER]
  if [[ ${f[1]} == "=>" ]]; then lhs=${f[0]}; rest=("${f[@]:2}"); else lhs=${f[0]}@${f[1]}; rest=("${f[@]:3}"); fi
  case ${rest[0]} in
    .*|/*) echo "jaeger: upstream go.mod replaces ${f[0]} with a local path; cannot repeat it" >&2; exit 1 ;;
  esac
  rhs=${rest[0]}${rest[1]:+@${rest[1]}}
  echo "jaeger: repeating upstream replace $lhs => $rhs"
  "$GO" mod edit -replace="$lhs=$rhs"
done

"$GO" get -tool "$JAEGER_PKG@$JAEGER_MODULE_VERSION"

build_date=$("$GO" list -m -f '{{.Time.UTC.Format "2006-01-02T15:04:05Z"}}' "$JAEGER_MODULE")
vpkg=$JAEGER_MODULE/internal/version
mkdir -p "$(dirname "$out")"
"$GO" build -trimpath -o "$tmp_out" \
  -ldflags "-s -w -X $vpkg.latestVersion=$JAEGER_V2_VERSION -X $vpkg.date=$build_date" \
  "$JAEGER_PKG"
mv -f "$tmp_out" "$out"
printf '%s\n' "$want" >"$stamp"

echo "jaeger: built $out ($(du -h "$out" | cut -f1)) in $(( $(date +%s) - start ))s"
"$out" version 2>/dev/null | tail -n 1
echo
