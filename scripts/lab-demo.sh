#!/usr/bin/env bash
# The main command: build ironflow (release), start the seed cluster in network namespaces (OVN central, three `ironflow run` nodes, pods), ping sshd-2 from web-1 across nodes, trace that packet, show the node's counters, and take it all down.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
sudo=()
[ "$(id -u)" -eq 0 ] || sudo=(sudo)  # network namespaces, veth, packet sockets
echo "lab-demo: building ironflow (release)"
target=${CARGO_TARGET_DIR:-target}
cargo build --release --quiet -p ironflow-control -p ironflow-testbeds --bins
"${sudo[@]}" env IRONFLOW_BIN="$target/release/ironflow" "$target/release/ironflow-lab" demo "$@"
