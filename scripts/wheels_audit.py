"""`make wheels`' last step: `auditwheel show` on every platform wheel in DIST, and a verdict.

A platform wheel passes when auditwheel finds it consistent with the platform tag in its own file name,
that tag is manylinux_2_28 or older (Debian 11 / Raspberry Pi OS 11 and Ubuntu 20.04 have glibc 2.31),
and it is abi3 for CPython >= 3.11. The pure-Python wheel (py3-none-any) is listed with its size.
Exit status 1 when any wheel fails. Usage: python scripts/wheels_audit.py AUDITWHEEL DIST
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

MAX_GLIBC = (2, 28)


def main() -> int:
    auditwheel, dist = sys.argv[1], Path(sys.argv[2])
    wheels = sorted(dist.glob("*.whl"))
    if not wheels:
        print(f"no wheel in {dist}", file=sys.stderr)
        return 1
    failed = 0
    for wheel in wheels:
        size = wheel.stat().st_size / 1e6
        platform_tags = wheel.stem.split("-")[-1].split(".")
        if platform_tags == ["any"]:
            print(f"{wheel.name}: {size:.2f} MB, pure Python (no auditwheel needed)")
            continue
        out = subprocess.run([auditwheel, "show", str(wheel)], capture_output=True, text=True)
        text = " ".join((out.stdout + out.stderr).split())
        print(f"--- auditwheel show {wheel.name} (exit {out.returncode})")
        print((out.stdout + out.stderr).strip())
        consistent = re.search(r'consistent with the following platform tag: "([^"]+)"', text)
        glibcs = re.findall(r"GLIBC_(\d+)\.(\d+)", text)
        highest = max(((int(a), int(b)) for a, b in glibcs), default=None)
        tag = consistent.group(1) if consistent else None
        version = re.match(r"manylinux_(\d+)_(\d+)_", tag or "")
        problems = []
        if out.returncode != 0:
            problems.append(f"auditwheel exited {out.returncode}")
        if tag is None or tag not in platform_tags:
            problems.append(f"auditwheel's tag {tag!r} is not the file name's {platform_tags}")
        if version is None or (int(version.group(1)), int(version.group(2))) > MAX_GLIBC:
            problems.append(f"{tag!r} is newer than manylinux_{MAX_GLIBC[0]}_{MAX_GLIBC[1]}")
        if "-cp311-abi3-" not in wheel.name:
            problems.append("not cp311-abi3")
        glibc = f"{highest[0]}.{highest[1]}" if highest else "none"
        if problems:
            failed += 1
            print(f"VERDICT {wheel.name}: FAIL ({'; '.join(problems)}); {size:.2f} MB")
        else:
            print(f"VERDICT {wheel.name}: OK, {tag}, highest glibc symbol {glibc}, abi3 cp311, {size:.2f} MB")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
