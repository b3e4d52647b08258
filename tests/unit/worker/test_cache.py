"""The worker's own files and facts: node.json, worker.db (assignments, local view, status queue),
and the CPUs/memory it offers (cgroup v1 and v2 limits)."""

from __future__ import annotations

import os
import sqlite3
import stat
from pathlib import Path

import pytest

from warren.durable import private_data_dir
from warren.errors import CorruptStateError
from warren.worker import identity, resources
from warren.worker.cache import MAX_MESSAGE_CHARS, LocalTask, StatusUpdate, WorkerCache
from warren.worker.identity import WorkerIdentity

# -- node.json --------------------------------------------------------------------------------------


def test_identity_round_trip_private_and_atomic(tmp_path: Path) -> None:
    data_dir = private_data_dir(str(tmp_path / "w"))
    assert stat.S_IMODE(os.stat(data_dir).st_mode) == 0o700
    assert identity.load(data_dir) is None
    me = WorkerIdentity("worker-1", "the-secret", "cluster-1", ("10.0.0.1:8080", "10.0.0.2:8080"))
    identity.save(data_dir, me)
    assert identity.load(data_dir) == me
    assert stat.S_IMODE(os.stat(identity.path(data_dir)).st_mode) == 0o600
    assert os.listdir(data_dir) == ["node.json"]  # no temp file left behind
    assert "the-secret" not in repr(me)
    # A stale temp file with loose bits from a crash does not make the new file readable by others.
    tmp = identity.path(data_dir) + ".tmp"
    with open(tmp, "w") as f:
        f.write("junk")
    os.chmod(tmp, 0o644)
    identity.save(data_dir, me)
    assert stat.S_IMODE(os.stat(identity.path(data_dir)).st_mode) == 0o600


@pytest.mark.parametrize(
    "content", [b"{not json", b"[1, 2]", b'{"name": "w"}', b'{"name": "w", "secret": "", "cluster_id": "c"}']
)
def test_damaged_identity_is_refused_with_advice(tmp_path: Path, content: bytes) -> None:
    (tmp_path / "node.json").write_bytes(content)
    with pytest.raises(CorruptStateError, match="join this worker again"):
        identity.load(str(tmp_path))


# -- worker.db --------------------------------------------------------------------------------------


def update(task_id: str, state: str, **extra: object) -> StatusUpdate:
    return StatusUpdate(task_id, state, extra.pop("message", state), 1.0, **extra)  # type: ignore[arg-type]


def test_assignments_round_trip_and_digest(tmp_path: Path) -> None:
    cache = WorkerCache.open(str(tmp_path))
    assert cache.assignments() == (None, {})
    cache.save_assignments("d1", [{"task_id": "t1", "spec": {"image": "a"}}, {"task_id": "t2"}])
    cache.save_assignments("d2", [{"task_id": "t2", "desired_state": "shutdown"}], removed=["t1"])
    cache.close()
    again = WorkerCache.open(str(tmp_path))
    assert again.assignments() == ("d2", {"t2": {"task_id": "t2", "desired_state": "shutdown"}})
    again.save_assignments("", [], removed=["t2"])
    assert again.assignments() == ("", {})  # saved, though empty: a manager said so
    again.close()


def test_local_tasks_round_trip(tmp_path: Path) -> None:
    cache = WorkerCache.open(str(tmp_path))
    task = LocalTask(
        "t1", "docker", "c1", "running", restarts=2, message="m", exit_code=None, restartable=True
    )
    cache.put_local(task)
    cache.put_local(LocalTask("t2", "process", None, "starting"))
    cache.drop_local("t2")
    cache.close()
    assert WorkerCache.open(str(tmp_path)).local_tasks() == {"t1": task}


def test_status_queue_merges_per_task_keeps_order_and_acks_only_what_was_sent(tmp_path: Path) -> None:
    cache = WorkerCache.open(str(tmp_path))
    cache.enqueue(update("t1", "starting"))
    cache.enqueue(update("t2", "running", container_id="c2"))
    cache.enqueue(update("t1", "running", container_id="c1", health="starting"))
    # Merged: one entry per task, moved to the back; the latest state, the container and health kept.
    sent = cache.pending()
    assert [(u.task_id, u.state) for _, u in sent] == [("t2", "running"), ("t1", "running")]
    cache.enqueue(update("t1", "failed", exit_code=3, message="exited with status 3"))
    failed = cache.pending()[-1][1]
    assert (failed.state, failed.container_id, failed.exit_code, failed.health) == (
        "failed",
        "c1",
        3,
        "starting",
    )
    assert cache.pending_state("t1") == "failed" and cache.pending_state("t3") is None
    # A manager acknowledged what was sent before t1 failed: t2 goes, t1's newer update stays.
    cache.ack(sent)
    assert [(u.task_id, u.state) for _, u in cache.pending()] == [("t1", "failed")]
    cache.close()
    reopened = WorkerCache.open(str(tmp_path))
    assert [(u.task_id, u.state) for _, u in reopened.pending()] == [("t1", "failed")]
    reopened.ack(reopened.pending())
    assert reopened.pending() == []


def test_status_update_doc_is_the_protocol_item() -> None:
    u = StatusUpdate("t1", "failed", "exited with status 1", 12.5, "c1", 1, None)
    assert u.to_doc() == {
        "task_id": "t1",
        "state": "failed",
        "message": "exited with status 1",
        "at": 12.5,
        "container_id": "c1",
        "exit_code": 1,
        "health": None,
    }
    assert StatusUpdate.from_doc(u.to_doc()) == u


def test_a_long_message_is_cut_to_what_the_api_takes() -> None:
    u = StatusUpdate("t1", "failed", "x" * 10_000, 1.0)
    assert len(u.message) == MAX_MESSAGE_CHARS and u.message.endswith("...")
    assert StatusUpdate("t1", "failed", "short", 1.0).message == "short"


def test_worker_db_uses_wal_and_refuses_another_schema(tmp_path: Path) -> None:
    WorkerCache.open(str(tmp_path)).close()
    conn = sqlite3.connect(tmp_path / "worker.db")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema'")
    conn.commit()
    conn.close()
    with pytest.raises(CorruptStateError, match="schema version 99"):
        WorkerCache.open(str(tmp_path))


# -- resources --------------------------------------------------------------------------------------


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
