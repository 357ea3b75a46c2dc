#!/bin/sh
# Installs, from Debian's (or Ubuntu's) archive, what the host needs to build and run test
# nodes and the fuzz targets, and says what it installs. Everything else lives inside the node
# root filesystems.
set -eu

# nsenter and unshare (util-linux), debootstrap, the Debian archive keys debootstrap
# verifies trixie and sid with (not preinstalled on Ubuntu), a C++ compiler for the
# libFuzzer the fuzz targets link (make fuzz), libseccomp's static library for the runc the
# containerd 2.x nodes run (built from its Go module), and QEMU, cpio and e2fsprogs
# (mkfs.ext4 -d) for the cgroup v2 guest's disks.
packages="debootstrap util-linux debian-archive-keyring ca-certificates g++ libseccomp-dev pkg-config qemu-system-x86 cpio e2fsprogs gdb"

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

# containerd 2.3 and 2.4, runc, crictl and the kubelet are built from their Go modules, with
# a Go that the archive of older releases does not have.
if ! command -v go >/dev/null 2>&1; then
    echo "revive: go not found: install Go >= 1.26.8 (the containerd 2.x nodes' programs are built from their Go modules) and retry" >&2
    exit 1
fi
go_version=$(go env GOVERSION | sed 's/^go//')
if [ "$(printf '%s\n1.26.8\n' "$go_version" | sort -V | head -n1)" != "1.26.8" ]; then
    echo "revive: go $go_version is too old: the containerd 2.x nodes need Go >= 1.26.8" >&2
    exit 1
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
