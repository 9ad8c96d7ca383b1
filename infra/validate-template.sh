#!/usr/bin/env bash
# Validates template.yaml offline with `sam validate --lint` and `cfn-lint`, installing both from
# PyPI into the private virtualenv the emulator scripts use.
set -euo pipefail
cd "$(dirname "$0")/.."

venv="${FLATBUCKET_VENV:-/var/tmp/flatbucket-venv}"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv" >&2
if [ ! -x "$venv/bin/sam" ] || [ ! -x "$venv/bin/cfn-lint" ]; then
    "$venv/bin/pip" install -q aws-sam-cli cfn-lint >&2
fi
export SAM_CLI_TELEMETRY=0
"$venv/bin/sam" validate --lint -t template.yaml --region us-east-1
"$venv/bin/cfn-lint" template.yaml
