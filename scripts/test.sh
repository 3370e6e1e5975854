#!/usr/bin/env bash
# The whole test suite: unit tests, black-box tests against the real binary, doc tests.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
cargo test --locked "$@"
