#!/usr/bin/env bash
# The whole test suite: installs what it needs, then runs every crate's tests (integration tests start a real OVN central).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo test --workspace --no-fail-fast "$@"
