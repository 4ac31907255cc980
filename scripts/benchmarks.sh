#!/usr/bin/env bash
# Issue 8's results from scratch: installs what it needs, builds, runs the
# side-by-side benchmark and the control-plane benchmark, and writes their
# JSON, tables and charts to bench/results (what the README shows). Root;
# about 10 minutes on a 2-vCPU machine.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --release -p ironflow-control -p ironflow-bench --features ironflow-bench/plots
out="${1:-bench/results}"
target/release/ironflow-bench system --peer ironflow,ironflow-afxdp,kernel,ovs-netdev,ovs-afxdp \
    --seconds 3 --rounds 3 --out "$out"
target/release/ironflow-bench control --switches 850 --ports 20 --rounds 3 --out "$out"
echo "benchmarks: results in $out (table.md, control.md, plots/)"
