"""What a worker offers: its CPUs and memory (cgroup v1 and v2 limits), drivers and address."""

from __future__ import annotations

import os
from pathlib import Path

from warren.worker import resources


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_cgroup_v2_limits_win_over_the_machine(tmp_path: Path) -> None:
    root = tmp_path / "cg"
    write(root / "cpu.max", "150000 100000\n")
    write(root / "memory.max", "536870912\n")
    meminfo = tmp_path / "meminfo"
    write(meminfo, "MemTotal:       16303912 kB\nMemFree:  1 kB\n")
    r = resources.detect(["docker", "process"], cgroup_root=str(root), meminfo=str(meminfo))
    assert r.cpus == min(1.5, float(len(os.sched_getaffinity(0))))
    assert r.memory == 536870912
    assert r.drivers == ("docker", "process") and r.hostname


def test_cgroup_v2_without_limits_and_v1(tmp_path: Path) -> None:
    meminfo = tmp_path / "meminfo"
    write(meminfo, "MemTotal:       2048 kB\n")
    v2 = tmp_path / "v2"
    write(v2 / "cpu.max", "max 100000\n")
    write(v2 / "memory.max", "max\n")
    assert resources.detect_cpus(str(v2)) == float(len(os.sched_getaffinity(0)))
    assert resources.detect_memory(str(v2), str(meminfo)) == 2048 * 1024
    v1 = tmp_path / "v1"
    write(v1 / "cpu" / "cpu.cfs_quota_us", "-1\n")
    write(v1 / "cpu" / "cpu.cfs_period_us", "100000\n")
    write(v1 / "memory" / "memory.limit_in_bytes", "9223372036854771712\n")  # v1's "no limit"
    assert resources.detect_cpus(str(v1)) == float(len(os.sched_getaffinity(0)))
    assert resources.detect_memory(str(v1), str(meminfo)) == 2048 * 1024
    write(v1 / "cpu" / "cpu.cfs_quota_us", "50000\n")
    write(v1 / "memory" / "memory.limit_in_bytes", "1048576\n")
    assert resources.detect_cpus(str(v1)) == 0.5
    assert resources.detect_memory(str(v1), str(meminfo)) == 1048576


def test_this_machine_is_detected() -> None:
    r = resources.detect(["process"])
    assert r.cpus >= 0.01 and r.memory > 0
    assert r.to_doc()["drivers"] == ["process"]


def test_local_address_towards_a_loopback_manager() -> None:
    assert resources.local_address_towards("127.0.0.1", 8080) == "127.0.0.1"


def test_host_access_is_reported_only_when_allowed() -> None:
    plain = resources.detect(["docker"]).to_doc()
    # An older manager takes it.
    assert "allow_privileged" not in plain and "allow_devices" not in plain and "allow_binds" not in plain
    doc = resources.detect(["docker"], allow_privileged=True, allow_devices=["/dev/ttyUSB0"],
                           allow_binds=["/srv/data", "/media"]).to_doc()
    assert doc["allow_privileged"] is True and doc["allow_devices"] == ["/dev/ttyUSB0"]
    assert doc["allow_binds"] == ["/srv/data", "/media"]
