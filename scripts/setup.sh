#!/usr/bin/env bash
# Installs what ironflow needs on Debian/Ubuntu: OVN and Open vSwitch (the real components the tests run against) and build tools.
set -euo pipefail

packages=(
  ovn-central ovn-host ovn-common openvswitch-switch  # real OVN for labs and tests
  iproute2 ethtool tcpdump iputils-ping               # namespace labs
  build-essential pkg-config                          # crates with C parts
  libelf-dev clang m4                                 # AF_XDP (xsk-rs)
)

sudo=()
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "setup: run as root (or install sudo)" >&2; exit 1; }
  sudo=(sudo)
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  "${sudo[@]}" apt-get update -qq
  "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null; then
  echo "setup: no Rust toolchain; trying Debian's cargo (rustup from rust-lang.org gives a newer one)"
  "${sudo[@]}" apt-get install -y -qq --no-install-recommends cargo rustc >/dev/null
fi

echo "setup: $(ovn-northd --version | head -1), $(ovsdb-server --version | head -1), $(cargo --version)"
