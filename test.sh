#!/usr/bin/env bash
# Checks the whole workspace: formatting, lints and every test suite.
# Installs the system packages the end-to-end suites need first.
set -euo pipefail
cd "$(dirname "$0")"

bash infra/install-deps.sh

if cargo fmt --version >/dev/null 2>&1; then
    echo "==> cargo fmt --check" >&2
    cargo fmt --all -- --check
fi
if cargo clippy --version >/dev/null 2>&1; then
    echo "==> cargo clippy" >&2
    cargo clippy --workspace --all-targets -- -D warnings
fi
echo "==> cargo test" >&2
cargo test --workspace
