#!/usr/bin/env bash
# Build rw2client (tests/integration/gateway/rw2client: our own small program around
# the Prometheus project's remote-write client, github.com/prometheus/client_golang/exp
# api/remote) with the machine's Go toolchain, at the module versions its go.sum pins.
#
# usage: infra/local/build/rw2client.sh OUTPUT_BINARY     e.g. "$CACHE/bin/rw2client"
#
# Go's module and build caches go under the stack home, beside the binary's bin/
# folder (OUTPUT_BINARY/../../go; FERRYMAN_GOPATH overrides), so a fresh clone reuses
# them and nothing lands in ~/go.
#
# Idempotent: exits 0 at once when OUTPUT_BINARY exists and its stamp file
# OUTPUT_BINARY.version names the digest of the program's sources and the Go version.
set -euo pipefail

src=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../../tests/integration/gateway/rw2client" && pwd)
out=${1:?usage: $0 OUTPUT_BINARY}
case $out in /*) ;; *) out=$PWD/$out ;; esac
stamp=$out.version

GO=${GO:-$(command -v go || echo /usr/local/go/bin/go)}
# Never let the go command fetch another toolchain; use the machine's Go.
export GOTOOLCHAIN=local
# Static binary, no C toolchain needed.
export CGO_ENABLED=0
export GOPATH=${FERRYMAN_GOPATH:-$(dirname "$(dirname "$out")")/go}
export GOMODCACHE=$GOPATH/pkg/mod
export GOCACHE=$GOPATH/cache
# Writable module cache: `rm -rf` of the stack home works.
export GOFLAGS="-modcacherw -mod=readonly"

digest=$(cd "$src" && cat go.mod go.sum ./*.go | sha256sum | cut -c1-16)
module_version=$(sed -n 's/^[[:space:]]*github.com\/prometheus\/client_golang\/exp \(v[^ ]*\).*/\1/p' "$src/go.mod")
# The second word is the version the stack reports for the install.
want="rw2client $module_version (github.com/prometheus/client_golang/exp; sources $digest; $("$GO" env GOVERSION))"

if [[ -x $out && -f $stamp && "$(cat "$stamp")" == "$want" ]]; then
  echo "rw2client: $out is up to date ($want)"
  exit 0
fi

echo "rw2client: building $want -> $out"
start=$(date +%s)
mkdir -p "$(dirname "$out")"
tmp_out=$out.tmp.$$
trap 'rm -f "$tmp_out"' EXIT
(cd "$src" && "$GO" build -trimpath -ldflags "-s -w" -o "$tmp_out" .)
mv -f "$tmp_out" "$out"
printf '%s\n' "$want" >"$stamp"
echo "rw2client: built $out ($(du -h "$out" | cut -f1)) in $(( $(date +%s) - start ))s"
