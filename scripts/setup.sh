#!/usr/bin/env bash
# Installs what ironflow needs on Debian/Ubuntu: OVN and Open vSwitch (the real components the tests run against) and build tools.
set -euo pipefail

packages=(
  ovn-central ovn-host ovn-common openvswitch-switch  # real OVN for labs and tests
  iproute2 ethtool tcpdump iputils-ping iperf3        # namespace labs
  python3                                             # pods in the datapath's kernel tests
  udhcpc traceroute isc-dhcp-client                   # real clients for the controller actions (DHCP, DHCPv6, TTL)
  build-essential pkg-config                          # crates with C parts
  libelf-dev clang m4                                 # AF_XDP (xsk-rs)
)
root=$(cd "$(dirname "$0")/.." && pwd)
rust_version=$(sed -n 's/^rust-version *= *"\(.*\)"/\1/p' "$root/Cargo.toml")

sudo=()
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "setup: run as root (or install sudo)" >&2; exit 1; }
  sudo=(sudo)
fi

updated=
apt_install() {
  command -v apt-get >/dev/null || { echo "setup: no apt-get; install by hand: $*" >&2; exit 1; }
  # Through env: sudo would drop an exported DEBIAN_FRONTEND.
  local apt=("${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -qq)
  [ -n "$updated" ] || { "${apt[@]}" update; updated=1; }
  "${apt[@]}" install -y --no-install-recommends "$@" >/dev/null
}

missing=()
for p in "${packages[@]}"; do
  # Not `dpkg -s`: it succeeds for removed packages whose config files remain.
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  apt_install "${missing[@]}"
fi

# rustup installs here without touching PATH for non-login shells.
[ -x "$HOME/.cargo/bin/cargo" ] && PATH="$HOME/.cargo/bin:$PATH"
if ! command -v cargo >/dev/null; then
  echo "setup: no Rust toolchain; trying Debian's cargo (a current one from rustup is better)"
  apt_install cargo rustc
fi
have=$(cargo --version | cut -d' ' -f2)
if [ "$(printf '%s\n' "$rust_version" "$have" | sort -V | head -1)" != "$rust_version" ]; then
  echo "setup: cargo $have is older than the $rust_version ironflow needs: install a current toolchain with rustup and retry" >&2
  exit 1
fi

echo "setup: $(ovn-northd --version | head -1), $(ovsdb-server --version | head -1), cargo $have"
