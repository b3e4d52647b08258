#!/usr/bin/env bash
# `make wheels-test-arm64`: the wheels-test smoke on aarch64 under emulation. An arm64 Debian bookworm
# root (scripts/arm64_root.sh, cached) gets dist/'s aarch64 core wheel and the pure-Python Warren wheel;
# inside it (chroot, qemu-aarch64 via binfmt_misc), bookworm's own python3 (3.11) makes a fresh venv,
# pip installs the wheels (dependencies from PyPI: resolv.conf and the host's CA bundle are copied in),
# nothing in the root has cargo or a C compiler (checked), and scripts/wheels_smoke.sh runs with the installed `warren`.
# Usage (as root): scripts/wheels_test_arm64.sh ROOT DIST
set -euo pipefail
root=$(mkdir -p "${1:?usage: wheels_test_arm64.sh ROOT DIST}" && cd "$1" && pwd)
dist=$(cd "${2:?}" && pwd)
here=$(cd "$(dirname "$0")" && pwd)
start=$(date +%s)

core=$(ls "$dist"/warren_raft-*-cp311-abi3-manylinux_*_aarch64.whl 2>/dev/null | head -n 1)
warren=$(ls "$dist"/warren_orchestrator-*-py3-none-any.whl 2>/dev/null | head -n 1)
if [ -z "$core" ] || [ -z "$warren" ]; then
    echo "error: no warren_raft aarch64 wheel or warren_orchestrator wheel in $dist: run make wheels" >&2
    exit 1
fi

bash "$here/arm64_root.sh" "$root"
echo "root ready after $(( $(date +%s) - start )) s"

stage=$root/opt/warren-wheels
rm -rf "$stage"
mkdir -p "$stage"
cp "$core" "$warren" "$here/wheels_smoke.sh" "$stage/"
cp -L /etc/resolv.conf "$root/etc/resolv.conf"
# The host's trust store, for pip inside the root: this host may reach PyPI through a TLS proxy whose CA
# only the host's bundle holds.
cp -L "${PIP_CERT:-${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}}" "$root/etc/ssl/certs/host-ca-bundle.crt"

mounted=()
cleanup() {
    local i
    for (( i=${#mounted[@]}-1; i>=0; i-- )); do umount -l "${mounted[i]}" 2>/dev/null || true; done
}
trap cleanup EXIT
for fs in proc dev dev/pts; do
    if ! mountpoint -q "$root/$fs"; then
        case $fs in
            proc) mount -t proc proc "$root/proc" ;;
            *) mount --bind "/$fs" "$root/$fs" ;;
        esac
        mounted+=("$root/$fs")
    fi
done

chroot "$root" /usr/bin/env -i HOME=/root TERM=dumb PATH=/usr/sbin:/usr/bin:/sbin:/bin \
    CORE="/opt/warren-wheels/$(basename "$core")" WARREN_WHEEL="/opt/warren-wheels/$(basename "$warren")" \
    PIP_CERT=/etc/ssl/certs/host-ca-bundle.crt SMOKE_DEADLINE="${SMOKE_DEADLINE:-600}" /bin/bash -euo pipefail -c '
echo "== inside the arm64 root: $(uname -m), $(python3 --version), $(. /etc/os-release; echo "$PRETTY_NAME")"
for tool in cargo rustc rustup cc gcc c++ g++ clang zig ld; do
    if found=$(command -v "$tool"); then
        echo "error: $tool is on PATH ($found): this test installs without a compiler" >&2
        exit 1
    fi
    echo "command -v $tool: not found"
done
rm -rf /opt/warren-venv
python3 -m venv /opt/warren-venv
echo "== pip install $(basename "$CORE") $(basename "$WARREN_WHEEL") (binary wheels only; dependencies from PyPI)"
t=$(date +%s)
/opt/warren-venv/bin/python -m pip install --quiet --disable-pip-version-check --only-binary :all: "$CORE" "$WARREN_WHEEL"
echo "pip install took $(( $(date +%s) - t )) s"
/opt/warren-venv/bin/python -c "import warren.raft_bridge as b, warren_raft; print(\"state-machine bridge:\", b.IMPLEMENTATION, \"| warren_raft:\", warren_raft.__file__)"
export PATH=/opt/warren-venv/bin:$PATH
WARREN=/opt/warren-venv/bin/warren PYTHON=/opt/warren-venv/bin/python bash /opt/warren-wheels/wheels_smoke.sh
'
echo "wheels-test-arm64: PASS in $(( $(date +%s) - start )) s"
