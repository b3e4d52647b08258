#!/usr/bin/env bash
# `make wheels-test`: install dist/'s x86_64 wheels into a fresh venv with plain pip, on a PATH that
# holds neither cargo/rustc nor any C compiler (shown with `command -v`), and run the smoke
# (scripts/wheels_smoke.sh) with the installed `warren`.
# Usage: scripts/wheels_test.sh PYTHON DIST WORKDIR
set -euo pipefail
python=$(command -v "${1:?usage: wheels_test.sh PYTHON DIST WORKDIR}")
dist=$(cd "${2:?}" && pwd)
work=${3:?}
mkdir -p "$work" && work=$(cd "$work" && pwd)
arch=$(uname -m)
here=$(cd "$(dirname "$0")" && pwd)
start=$(date +%s)

core=$(ls "$dist"/warren_raft-*-cp311-abi3-manylinux_*_"$arch".whl 2>/dev/null | head -n 1)
warren=$(ls "$dist"/warren_orchestrator-*-py3-none-any.whl 2>/dev/null | head -n 1)
if [ -z "$core" ] || [ -z "$warren" ]; then
    echo "error: no warren_raft $arch wheel or warren_orchestrator wheel in $dist: run make wheels" >&2
    exit 1
fi

rm -rf "$work"
mkdir -p "$work/bin"
# A PATH of only what pip and the smoke use: the venv's bin and this directory of links.
for tool in bash sh env date sleep tail rm grep mktemp pkill cat dirname basename uname ls head seq; do
    if path=$(command -v "$tool"); then ln -s "$path" "$work/bin/$tool"; fi
done
"$python" -m venv "$work/venv"
# Away from the checkout: `python -c` puts the current directory first on sys.path, and the checkout's
# warren/ (with its compiled bridge) must not stand in for the installed one.
cd "$work"
export PATH="$work/venv/bin:$work/bin"
hash -r
echo "== PATH=$PATH"
for tool in cargo rustc rustup cc gcc c++ g++ clang zig ld; do
    if found=$(command -v "$tool"); then
        echo "error: $tool is on PATH ($found): this test installs without a compiler" >&2
        exit 1
    fi
    echo "command -v $tool: not found"
done

echo "== pip install $(basename "$core") $(basename "$warren") (binary wheels only; dependencies from PyPI)"
pip_start=$(date +%s)
# Plain pip: no local wheel directory from this machine's configuration stands in for PyPI.
unset PIP_FIND_LINKS PIP_NO_INDEX PIP_INDEX_URL PIP_EXTRA_INDEX_URL
"$work/venv/bin/python" -m pip install --quiet --disable-pip-version-check --only-binary :all: \
    "$core" "$warren"
echo "pip install took $(( $(date +%s) - pip_start )) s"
"$work/venv/bin/python" -m pip list --disable-pip-version-check 2>/dev/null | grep -iE '^warren' || true
"$work/venv/bin/python" -c 'import warren.raft_bridge as b, warren_raft; print("state-machine bridge:", b.IMPLEMENTATION, "| warren_raft:", warren_raft.__file__)'

WARREN="$work/venv/bin/warren" PYTHON="$work/venv/bin/python" bash "$here/wheels_smoke.sh"
echo "wheels-test ($arch): PASS in $(( $(date +%s) - start )) s"
