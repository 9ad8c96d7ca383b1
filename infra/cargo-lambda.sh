#!/usr/bin/env bash
# Installs cargo-lambda (PyPI `cargo-lambda`, a pinned version) into the private virtualenv that
# infra/moto.sh also uses, for the suite that runs the Lambda functions under `cargo lambda watch`.
# Prints the environment that suite reads; `eval "$(bash infra/cargo-lambda.sh)"` applies it.
set -euo pipefail

version="1.9.2"
venv="${FLATBUCKET_VENV:-/var/tmp/flatbucket-venv}"

if [ "$("$venv/bin/pip" show cargo-lambda 2>/dev/null | sed -n 's/^Version: //p')" != "$version" ]; then
    [ -x "$venv/bin/pip" ] || python3 -m venv "$venv" >&2
    "$venv/bin/pip" install -q "cargo-lambda==$version" >&2
fi
echo "export CARGO_LAMBDA=$venv/bin/cargo-lambda"
