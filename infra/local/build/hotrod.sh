#!/usr/bin/env bash
# Build HotROD ("Rides on Demand", the demo application in the Jaeger Go module's
# examples/hotrod, instrumented with the OpenTelemetry Go SDK) with the machine's
# Go toolchain, from the same module version as jaeger.sh.
#
# usage: infra/local/build/hotrod.sh OUTPUT_BINARY     e.g. "$CACHE/bin/hotrod"
#
# Idempotent: exits 0 at once when OUTPUT_BINARY exists, its stamp file
# OUTPUT_BINARY.version matches, and the binary answers --help as HotROD.
#
# Jaeger's go.mod has replace directives, so `go install pkg@version` refuses it:
# we build in a throwaway module that repeats those replace directives (as
# jaeger.sh does; with jaeger.sh run first, the module cache is already warm).
set -euo pipefail

JAEGER_MODULE=github.com/jaegertracing/jaeger
JAEGER_MODULE_VERSION=v1.75.0   # Go module tag, the same as jaeger.sh
HOTROD_PKG=$JAEGER_MODULE/examples/hotrod

out=${1:?usage: $0 OUTPUT_BINARY}
case $out in /*) ;; *) out=$PWD/$out ;; esac
stamp=$out.version
want="hotrod $JAEGER_MODULE_VERSION (module $JAEGER_MODULE@$JAEGER_MODULE_VERSION)"

GO=${GO:-$(command -v go || echo /usr/local/go/bin/go)}
# Never let the go command fetch another toolchain; use the machine's Go.
export GOTOOLCHAIN=local
# Static binary, no C toolchain needed.
export CGO_ENABLED=0

if [[ -x $out && -f $stamp && "$(cat "$stamp")" == "$want" &&
      "$("$out" --help 2>/dev/null || true)" == *"HotR.O.D."* ]]; then
  echo "hotrod: $out is up to date ($want)"
  exit 0
fi

echo "hotrod: building $want with $("$GO" env GOVERSION) -> $out"
start=$(date +%s)

workdir=$(mktemp -d "${TMPDIR:-/tmp}/ferryman-hotrod-build.XXXXXX")
tmp_out=$out.tmp.$$
trap 'rm -rf "$workdir" "$tmp_out"' EXIT
cd "$workdir"

"$GO" mod init ferryman.local/build/hotrod >/dev/null 2>&1

# Repeat the replace directives of Jaeger's own go.mod (both the one-line
# form and the `replace ( ... )` block form).
upstream_gomod=$("$GO" mod download -json "$JAEGER_MODULE@$JAEGER_MODULE_VERSION" |
  sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')
[[ -f $upstream_gomod ]] || { echo "hotrod: cannot locate go.mod of $JAEGER_MODULE@$JAEGER_MODULE_VERSION" >&2; exit 1; }

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
    .*|/*) echo "hotrod: upstream go.mod replaces ${f[0]} with a local path; cannot repeat it" >&2; exit 1 ;;
  esac
  rhs=${rest[0]}${rest[1]:+@${rest[1]}}
  echo "hotrod: repeating upstream replace $lhs => $rhs"
  "$GO" mod edit -replace="$lhs=$rhs"
done

"$GO" get -tool "$HOTROD_PKG@$JAEGER_MODULE_VERSION"

mkdir -p "$(dirname "$out")"
"$GO" build -trimpath -o "$tmp_out" -ldflags "-s -w" "$HOTROD_PKG"
mv -f "$tmp_out" "$out"
printf '%s\n' "$want" >"$stamp"

echo "hotrod: built $out ($(du -h "$out" | cut -f1)) in $(( $(date +%s) - start ))s"
