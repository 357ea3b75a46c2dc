#!/bin/sh
# Installs, from Debian's (or Ubuntu's) archive, what the host needs to build and run test
# nodes and the fuzz targets, and says what it installs. Everything else lives inside the node
# root filesystems.
set -eu

# nsenter and unshare (util-linux), debootstrap, the Debian archive keys debootstrap
# verifies trixie and sid with (not preinstalled on Ubuntu), and a C++ compiler for the
# libFuzzer the fuzz targets link (make fuzz).
packages="debootstrap util-linux debian-archive-keyring ca-certificates g++"

missing=""
for p in $packages; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed"; then
        missing="$missing $p"
    fi
done
if [ -n "$missing" ]; then
    echo "revive: installing host packages:$missing"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing
fi

# The Rust toolchain cannot come from the archive (Debian's is too old for edition 2024).
if ! command -v cargo >/dev/null 2>&1; then
    echo "revive: cargo not found: install a Rust toolchain >= 1.90 (rustup) and retry" >&2
    exit 1
fi
rustc_version=$(rustc --version | awk '{print $2}')
if [ "$(printf '%s\n1.90.0\n' "$rustc_version" | sort -V | head -n1)" != "1.90.0" ]; then
    echo "revive: rustc $rustc_version is too old: revive needs Rust >= 1.90 (rustup update)" >&2
    exit 1
fi
