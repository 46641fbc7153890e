#!/usr/bin/env bash
# Build VictoriaLogs (the program github.com/VictoriaMetrics/VictoriaLogs/app/victoria-logs)
# from its Go module with the machine's Go toolchain. It stands in for Loki
# locally: it accepts the Loki push API at /insert/loki/api/v1/push.
#
# usage: infra/local/build/victorialogs.sh OUTPUT_BINARY   e.g. "$CACHE/bin/victoria-logs"
#
# Idempotent: exits 0 at once when OUTPUT_BINARY exists, its stamp file
# OUTPUT_BINARY.version matches, and the binary reports the pinned version.
#
# The module has no replace directives, so a plain `go install pkg@version`
# builds it with exactly the upstream dependency versions.
set -euo pipefail

VL_MODULE=github.com/VictoriaMetrics/VictoriaLogs
VL_VERSION=v1.52.1              # Go module tag (needs Go >= 1.26.5)
VL_PKG=$VL_MODULE/app/victoria-logs

out=${1:?usage: $0 OUTPUT_BINARY}
case $out in /*) ;; *) out=$PWD/$out ;; esac
stamp=$out.version
want="victoria-logs $VL_VERSION (module $VL_MODULE@$VL_VERSION)"

GO=${GO:-$(command -v go || echo /usr/local/go/bin/go)}
# Never let the go command fetch another toolchain; use the machine's Go.
export GOTOOLCHAIN=local
# Pure-Go static binary (upstream's "-pure" flavour); no C toolchain needed.
export CGO_ENABLED=0

if [[ -x $out && -f $stamp && "$(cat "$stamp")" == "$want" &&
      "$("$out" -version 2>/dev/null || true)" == *"-tags-$VL_VERSION" ]]; then
  echo "victorialogs: $out is up to date ($want)"
  exit 0
fi

echo "victorialogs: building $want with $("$GO" env GOVERSION) -> $out"
start=$(date +%s)

workdir=$(mktemp -d "${TMPDIR:-/tmp}/ferryman-victorialogs-build.XXXXXX")
tmp_out=$out.tmp.$$
trap 'rm -rf "$workdir" "$tmp_out"' EXIT
cd "$workdir"   # outside any module, so `go install pkg@version` uses only upstream's go.mod

# Same version string layout as upstream's Makefile: APP-DATE-TIME-tags-VERSION[...]
release_time=$("$GO" list -m -f '{{.Time.UTC.Format "20060102-150405"}}' "$VL_MODULE@$VL_VERSION")
buildinfo="victoria-logs-$release_time-tags-$VL_VERSION"

GOBIN=$workdir/bin "$GO" install -trimpath \
  -ldflags "-s -w -X 'github.com/VictoriaMetrics/VictoriaMetrics/lib/buildinfo.Version=$buildinfo'" \
  "$VL_PKG@$VL_VERSION"

mkdir -p "$(dirname "$out")"
cp "$workdir/bin/victoria-logs" "$tmp_out"
mv -f "$tmp_out" "$out"
printf '%s\n' "$want" >"$stamp"

echo "victorialogs: built $out ($(du -h "$out" | cut -f1)) in $(( $(date +%s) - start ))s"
"$out" -version
