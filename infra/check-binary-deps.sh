#!/usr/bin/env bash
# DESIGN property 5, checked: each binary compiles only what it uses. The client package without
# its server feature builds flat-manager-client and gentoken with no server crates (libostree
# included); the Lambda functions do not link libostree; the deltas function and the all-in-one
# `flat-manager` server (which generates static deltas in process) do.
set -euo pipefail
cd "$(dirname "$0")/.."

fail=0
deps() { cargo tree -e normal --prefix none "$@" 2>/dev/null | cut -d' ' -f1 | sort -u; }

cargo check -q -p flatbucket-cli --no-default-features --bins
client=$(deps -p flatbucket-cli --no-default-features | grep -xE 'axum|multer|rusqlite|aws-sdk-[a-z0-9]+|lambda_http|ostree' || true)
if [ -n "$client" ]; then
    echo "flat-manager-client and gentoken pull in server crates:" $client >&2
    fail=1
fi
if deps -p flatbucket-functions --all-features | grep -qx ostree; then
    echo "flatbucket-functions links libostree, which only the deltas function and flat-manager may" >&2
    fail=1
fi
deps -p flatbucket-deltas | grep -qx ostree || { echo "the deltas function does not link libostree" >&2; fail=1; }
deps -p flatbucket-cli | grep -qx ostree || { echo "flat-manager does not link libostree: it cannot generate deltas" >&2; fail=1; }
exit "$fail"
