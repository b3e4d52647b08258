#!/usr/bin/env bash
# Build the local test image warren-busybox:latest without any registry: FROM scratch plus the
# static busybox of Debian's busybox-static package (images/busybox/Dockerfile).
#
# Idempotent and quick: when the image already exists and was built from the same busybox binary
# (its sha256 is a label of the image), nothing is done. --force rebuilds anyway.
#
# Usage: scripts/build_image.sh [--force] [--tag TAG]
set -euo pipefail

TAG="warren-busybox:latest"
FORCE=0
while [ $# -gt 0 ]; do
    case "$1" in
        --force) FORCE=1 ;;
        --tag) shift; TAG="${1:?--tag needs a value}" ;;
        -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
        *) echo "usage: $0 [--force] [--tag TAG]" >&2; exit 2 ;;
    esac
    shift
done

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SRC="$HERE/images/busybox"
BUSYBOX=/bin/busybox

# Debian's busybox package (dynamic) also installs /bin/busybox: only the static one runs FROM scratch.
is_static() { [ -x "$1" ] && ! LC_ALL=C file -L "$1" 2>/dev/null | grep -q "dynamically linked"; }

if ! dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q "install ok installed"; then
    echo "build_image: installing busybox-static" >&2
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y -q busybox-static >&2; then
        apt-get update -q >&2
        apt-get install -y -q busybox-static >&2
    fi
fi
if ! is_static "$BUSYBOX"; then
    echo "build_image: $BUSYBOX is not a static binary (is busybox-static installed?)" >&2
    exit 1
fi

SUM="$(sha256sum "$BUSYBOX" | cut -d' ' -f1)"
if [ "$FORCE" = 0 ]; then
    HAVE="$(docker image inspect -f '{{ index .Config.Labels "org.warren.busybox.sha256" }}' "$TAG" 2>/dev/null || true)"
    if [ "$HAVE" = "$SUM" ]; then
        echo "$TAG is up to date"
        exit 0
    fi
fi

CONTEXT="$(mktemp -d)"
trap 'rm -rf "$CONTEXT"' EXIT
cp "$SRC/Dockerfile" "$CONTEXT/"
cp -r "$SRC/www" "$CONTEXT/www"
cp "$BUSYBOX" "$CONTEXT/busybox"

# The classic builder: it needs no buildx plugin and pulls nothing for FROM scratch.
# Its output (and its deprecation notice) is shown only if the build fails.
if ! DOCKER_BUILDKIT=0 docker build --pull=false --build-arg "BUSYBOX_SHA256=$SUM" -t "$TAG" "$CONTEXT" \
    >"$CONTEXT/build.log" 2>&1; then
    cat "$CONTEXT/build.log" >&2
    echo "build_image: docker build of $TAG failed" >&2
    exit 1
fi
echo "built $TAG"
