"""What this machine offers the scheduler: CPUs, memory, its host name, and the host access its
worker allows (privileged tasks, devices).

A worker inside a container (or a systemd slice) may be limited by its cgroup to less than the
machine has; the scheduler must see the limit, so a cgroup quota or memory limit wins over the
machine's totals. Both cgroup v2 (unified) and v1 layouts are read.
"""

from __future__ import annotations

import math
import os
import socket
from collections.abc import Sequence

from warren.runtime.base import NodeResources

CGROUP_ROOT = "/sys/fs/cgroup"
MEMINFO = "/proc/meminfo"
# cgroup v1 writes "no limit" as a huge number (PAGE_COUNTER_MAX pages); anything beyond this is none.
_NO_LIMIT = 1 << 60


def detect(
    drivers: Sequence[str],
    *,
    allow_privileged: bool = False,
    allow_devices: Sequence[str] = (),
    allow_binds: Sequence[str] = (),
    cgroup_root: str = CGROUP_ROOT,
    meminfo: str = MEMINFO,
) -> NodeResources:
    return NodeResources(
        cpus=detect_cpus(cgroup_root),
        memory=detect_memory(cgroup_root, meminfo),
        drivers=tuple(drivers),
        hostname=socket.gethostname(),
        allow_privileged=allow_privileged,
        allow_devices=tuple(allow_devices),
        allow_binds=tuple(allow_binds),
    )


def detect_cpus(cgroup_root: str = CGROUP_ROOT) -> float:
    """CPUs this process may use: its affinity mask, lowered to a cgroup CPU quota if there is one."""
    try:
        cpus = float(len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        cpus = float(os.cpu_count() or 1)
    quota = _cgroup_cpu_quota(cgroup_root)
    if quota is not None and quota < cpus:
        cpus = quota
    return round(cpus, 2)


def detect_memory(cgroup_root: str = CGROUP_ROOT, meminfo: str = MEMINFO) -> int:
    """Bytes of memory: MemTotal, lowered to the cgroup's memory limit if there is one."""
    total = _mem_total(meminfo)
    limit = _cgroup_memory_limit(cgroup_root)
    if limit is not None and (total == 0 or limit < total):
        return limit
    return total


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def _cgroup_cpu_quota(root: str) -> float | None:
    v2 = _read(os.path.join(root, "cpu.max"))  # "max 100000" or "150000 100000"
    if v2 is not None:
        parts = v2.split()
        if len(parts) == 2 and parts[0] != "max":
            return _ratio(parts[0], parts[1])
        return None
    quota = _read(os.path.join(root, "cpu", "cpu.cfs_quota_us"))  # -1: no quota
    period = _read(os.path.join(root, "cpu", "cpu.cfs_period_us"))
    if quota is None or period is None:
        return None
    return _ratio(quota, period)


def _ratio(quota: str, period: str) -> float | None:
    try:
        q, p = int(quota), int(period)
    except ValueError:
        return None
    if q <= 0 or p <= 0:
        return None
    # A quota of 1.5 periods is 1.5 CPUs; never report less than a hundredth.
    return max(0.01, math.floor(q / p * 100) / 100)


def _cgroup_memory_limit(root: str) -> int | None:
    v2, v1 = os.path.join(root, "memory.max"), os.path.join(root, "memory", "memory.limit_in_bytes")
    for candidate in (v2, v1):
        text = _read(candidate)
        if text is None:
            continue
        if text == "max" or not text.isdigit():
            return None
        value = int(text)
        return value if 0 < value < _NO_LIMIT else None
    return None


def _mem_total(meminfo: str) -> int:
    text = _read(meminfo) or ""
    for line in text.splitlines():
        if line.startswith("MemTotal:"):
            parts = line.split()
            if len(parts) >= 2 and parts[1].isdigit():
                unit = parts[2].lower() if len(parts) > 2 else "kb"
                return int(parts[1]) * (1024 if unit == "kb" else 1)
    return 0


def local_address_towards(host: str, port: int) -> str:
    """The local IP address this machine uses to reach `host` (no packet is sent: a UDP socket's
    connect only picks the route). The worker's default advertise address."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    except OSError:
        return "127.0.0.1"
    for family, kind, proto, _, sockaddr in infos:
        try:
            with socket.socket(family, kind, proto) as s:
                s.connect(sockaddr)
                return str(s.getsockname()[0])
        except OSError:
            continue
    return "127.0.0.1"
