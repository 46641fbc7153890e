#!/usr/bin/env bash
# Install checkov (the policy checker the Kubernetes manifest tests run) into its own
# virtualenv: it pins many libraries of its own, which must not meet ferryman's.
#
# usage: infra/local/build/checkov.sh OUTPUT_DIR   e.g. "$CACHE/opt/checkov-3.3.30"
#
# Idempotent: exits 0 at once when OUTPUT_DIR/.version holds the pinned version and
# OUTPUT_DIR/bin/checkov reports it. About a minute on the 2-core dev machine.
set -euo pipefail

CHECKOV_VERSION=3.3.30

out=${1:?usage: $0 OUTPUT_DIR}
case $out in /*) ;; *) out=$PWD/$out ;; esac
want="checkov $CHECKOV_VERSION"
if [[ -f $out/.version && "$(cat "$out/.version")" == "$want" &&
      "$("$out/bin/checkov" --version 2>/dev/null || true)" == "$CHECKOV_VERSION" ]]; then
  echo "checkov: $out is up to date ($want)"
  exit 0
fi

python=${PYTHON:-python3}
rm -rf "$out"
"$python" -m venv "$out"
"$out/bin/python" -m pip install --quiet --disable-pip-version-check "checkov==$CHECKOV_VERSION"
printf '%s\n' "$want" >"$out/.version"
echo "checkov: installed $("$out/bin/checkov" --version) in $out"
