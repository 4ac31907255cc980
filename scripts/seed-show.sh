#!/usr/bin/env bash
# The main job for now: start a real OVN central with the seed topology and print what ironflow sees of it.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --quiet --bins
dir=${IRONFLOW_LAB_DIR:-lab/seed}
target/debug/ironflow-lab seed --dir "$dir"
sb="unix:$(cd "$dir" && pwd)/sb.sock"
echo
echo "== ironflow sb show --db $sb"
target/debug/ironflow sb show --db "$sb"
echo
echo "The central keeps running. Compare with: ovn-sbctl --db=$sb show"
echo "Stop it with: target/debug/ironflow-lab stop --dir $dir"
