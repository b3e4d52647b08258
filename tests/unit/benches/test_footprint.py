"""benches/footprint.py's readings: CPU time and memory from /proc, installed size from RECORD files."""

from __future__ import annotations

import os
import time

from benches import footprint


def test_cpu_time_grows_with_work_and_counts_every_thread() -> None:
    before = footprint.cpu_s(os.getpid())
    deadline = time.process_time() + 0.3
    while time.process_time() < deadline:
        pass
    used = footprint.cpu_s(os.getpid()) - before
    assert 0.2 <= used <= 5.0


def test_memory_has_the_resident_set_and_its_parts() -> None:
    mem = footprint.memory_mb(os.getpid())
    assert mem["VmRSS"] > 5
    assert abs(mem["VmRSS"] - (mem["RssAnon"] + mem["RssFile"] + mem["RssShmem"])) < 1


def test_installed_size_follows_the_runtime_requirements_only() -> None:
    sizes = footprint.installed_sizes(None)
    assert {"warren-orchestrator", "warren-raft", "fastapi", "cryptography", "httpx"} <= set(sizes)
    assert "pytest" not in sizes and "mypy" not in sizes  # the dev extra is not installed for users
    assert all(size > 0 for size in sizes.values())
    assert list(sizes.values()) == sorted(sizes.values(), reverse=True)


def test_import_costs_are_measured_in_a_fresh_interpreter() -> None:
    table = footprint.import_costs(["json"]).splitlines()
    assert table[0].startswith("bare interpreter") and table[1].startswith("json ")
