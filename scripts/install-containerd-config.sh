#!/bin/sh
# Installs the revive snippet that matches the local containerd's major version into
# /etc/containerd/conf.d/revive.toml and tells how to make containerd read it.
set -eu
share="$1"
dest="${DESTDIR:-}/etc/containerd/conf.d/revive.toml"
if ! command -v containerd >/dev/null 2>&1; then
    echo "revive: containerd is not installed here; snippets for 1.7 and 2.x are in $share"
    exit 0
fi
version=$(containerd --version | awk '{print $3}' | sed 's/^v//')
# 2.0-2.2 read config version 3; 2.3 and later read version 4 (and would migrate a version
# 3 file with a warning at every start). The sections revive uses are the same in both.
config_version=3
case "$version" in
    1.*) snippet="$share/containerd-1.7.toml" ;;
    2.0.*|2.1.*|2.2.*) snippet="$share/containerd-2.x.toml" ;;
    *) snippet="$share/containerd-2.x.toml"; config_version=4 ;;
esac
# The 2.x snippet's unpack platform is this machine's (containerd's names for Debian's).
arch=$(dpkg --print-architecture 2>/dev/null || echo amd64)
case "$arch" in
    armhf) arch=arm ;;
    ppc64el) arch=ppc64le ;;
esac
install -d "$(dirname "$dest")"
sed -e "s|\"linux/amd64\"|\"linux/$arch\"|" -e "s|^version = 3\$|version = $config_version|" \
    "$snippet" > "$dest"
chmod 0644 "$dest"
echo "revive: installed $dest for containerd $version"
if ! grep -qs 'conf.d' /etc/containerd/config.toml; then
    echo "revive: make containerd read it: add  imports = [\"/etc/containerd/conf.d/*.toml\"]"
    echo "        at the top of /etc/containerd/config.toml, then: systemctl restart containerd"
fi
