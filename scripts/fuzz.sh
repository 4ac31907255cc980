#!/usr/bin/env bash
# Short fuzz run of ironflow's parsers: scripts/fuzz.sh [SECONDS] [TARGET...] (default 60 s, every target).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(lflow_match lflow_actions flow_extract geneve_decap)
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
# cargo fuzz wants nightly flags; the stable toolchain accepts them this way.
export RUSTC_BOOTSTRAP=1
for t in "${targets[@]}"; do
  corpus=$(mktemp -d)
  cp fuzz/seeds/"$t"/* "$corpus"/ 2>/dev/null || true
  echo "fuzz: $t for ${seconds}s"
  (cd fuzz && cargo fuzz run "$t" --sanitizer none "$corpus" -- -max_total_time="$seconds" -max_len=1024 2>&1 | tail -3)
  rm -rf "$corpus"
done
