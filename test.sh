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
    cargo clippy --workspace --all-targets --all-features -- -D warnings
fi
echo "==> each binary compiles only what it uses (DESIGN property 5)" >&2
bash infra/check-binary-deps.sh
echo "==> template.yaml (sam validate --lint, cfn-lint)" >&2
bash infra/validate-template.sh

echo "==> moto (S3, DynamoDB and SQS API server for the AWS backend tests)" >&2
eval "$(bash infra/moto.sh start)"
trap 'bash infra/moto.sh stop' EXIT
echo "==> cargo-lambda (runs the Lambda functions under \`cargo lambda watch\` for their end-to-end test)" >&2
eval "$(bash infra/cargo-lambda.sh)"

echo "==> cargo test" >&2
cargo test --workspace --all-features
