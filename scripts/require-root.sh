#!/bin/sh
# Fails at once, with the reason, unless we run as root.
if [ "$(id -u)" -ne 0 ]; then
    echo "revive: 'make $1' needs root: it builds Debian root filesystems with debootstrap and" >&2
    echo "starts test nodes (containerd, runc, CRIU) in their own namespaces and cgroups." >&2
    echo "Run it as root, e.g. 'sudo make $1'." >&2
    exit 1
fi
