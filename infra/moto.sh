#!/usr/bin/env bash
# Starts moto's S3/DynamoDB/SQS API server on 127.0.0.1:${MOTO_PORT:-5000} for the AWS backend
# tests, installing it from PyPI into a private virtualenv first if needed. Prints the
# environment the tests need; `source <(infra/moto.sh start)` applies it. `stop` ends it.
set -euo pipefail

port="${MOTO_PORT:-5000}"
venv="${FLATBUCKET_VENV:-/var/tmp/flatbucket-venv}"
pidfile="/tmp/flatbucket-moto-$port.pid"

install() {
    if [ ! -x "$venv/bin/moto_server" ]; then
        python3 -m venv "$venv" >&2
        "$venv/bin/pip" install -q 'moto[server]' >&2
    fi
}

start() {
    install
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        "$venv/bin/moto_server" -H 127.0.0.1 -p "$port" >/tmp/flatbucket-moto-$port.log 2>&1 &
        echo $! >"$pidfile"
        for _ in $(seq 100); do
            (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
            sleep 0.1
        done
    fi
    echo "export AWS_ENDPOINT_URL=http://127.0.0.1:$port"
    echo "export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1"
}

stop() {
    if [ -f "$pidfile" ]; then
        kill "$(cat "$pidfile")" 2>/dev/null || true
        rm -f "$pidfile"
    fi
}

"${1:-start}"
