#!/usr/bin/env bash
# Makes (once) and checks an arm64 Debian bookworm root for `make wheels-test-arm64`: debootstrap
# --foreign, then the second stage under qemu-aarch64 (qemu-user-static, registered in binfmt_misc with
# the fix-binary flag, so the chroot needs no copy of qemu). The root holds bookworm's own python3
# (3.11) and python3-venv. Cached: a root that finished its second stage is reused as it is.
# Usage: scripts/arm64_root.sh ROOT   (as root; the Makefile installs debootstrap and qemu-user-static)
set -euo pipefail
root=${1:?usage: arm64_root.sh ROOT}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

# binfmt_misc is not mounted at boot on these machines.
if [ ! -e /proc/sys/fs/binfmt_misc/register ]; then
    mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
fi
if [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
    if command -v update-binfmts >/dev/null 2>&1; then
        update-binfmts --enable qemu-aarch64
    else
        # systemd-binfmt's file, written straight to the kernel.
        grep -v '^#' /usr/lib/binfmt.d/qemu-aarch64.conf > /proc/sys/fs/binfmt_misc/register
    fi
fi
grep -q '^enabled' /proc/sys/fs/binfmt_misc/qemu-aarch64
grep -q '^flags: .*F' /proc/sys/fs/binfmt_misc/qemu-aarch64

if [ -e "$root/.warren-root-ready" ]; then
    echo "arm64 root: $root (cached)"
else
    start=$(date +%s)
    # --one-file-system: a bind mount left in it by a killed run (/dev, /proc) is never recursed into.
    rm -rf --one-file-system "$root"
    mkdir -p "$root"
    debootstrap --arch=arm64 --foreign --variant=minbase \
        --include=python3,python3-venv,ca-certificates,procps bookworm "$root" "$mirror"
    chroot "$root" /debootstrap/debootstrap --second-stage
    touch "$root/.warren-root-ready"
    echo "arm64 root: $root made in $(( $(date +%s) - start )) s"
fi
chroot "$root" /usr/bin/python3 -c 'import platform, sys; print("arm64 root python:", sys.version.split()[0], platform.machine())'
