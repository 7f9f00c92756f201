#!/bin/sh
# Rebuilds the contracts into a temporary directory and fails unless the result is byte-for-byte identical to
# the committed contracts/artifacts. Installs the pinned solc with `npm ci` when node_modules is missing.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
if [ ! -d "$here/node_modules/solc" ]; then
    npm ci --prefix "$here" --no-audit --no-fund
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
node "$here/build.js" "$tmp"
if ! diff -r "$here/artifacts" "$tmp"; then
    echo "check.sh: contracts/artifacts differ from a fresh build; run node contracts/build.js and commit" >&2
    exit 1
fi
echo "check.sh: artifacts reproduce byte for byte"
