"""The worker's worker.db: assignments, the local view of its tasks, the status queue."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from warren.errors import CorruptStateError
from warren.worker.cache import MAX_MESSAGE_CHARS, LocalTask, StatusUpdate, WorkerCache


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


def test_a_queued_running_update_keeps_its_ports_across_a_restart_and_a_health_report(tmp_path: Path) -> None:
    cache = WorkerCache.open(str(tmp_path))
    cache.enqueue(update("t1", "running", container_id="c1", ports={"8080": 32768}))
    cache.enqueue(update("t1", "running", container_id="c1", health="healthy"))  # no ports of its own
    cache.close()
    again = WorkerCache.open(str(tmp_path))  # the worker restarted before a manager acknowledged it
    (_, queued), = again.pending()
    assert (queued.health, queued.ports) == ("healthy", {"8080": 32768})
    assert queued.to_doc()["ports"] == {"8080": 32768}
    # A new container (restarted in place) reports its own ports: the old ones are not carried over.
    again.enqueue(update("t1", "running", container_id="c2"))
    assert again.pending()[0][1].ports is None
    again.enqueue(update("t1", "running", container_id="c2", ports={"8080": 32770}))
    assert again.pending()[0][1].ports == {"8080": 32770}
    again.close()


def test_an_update_without_ports_leaves_the_key_out() -> None:
    assert "ports" not in update("t1", "failed").to_doc()  # a manager of an earlier version refuses it
    damaged = {"task_id": "t", "state": "running", "at": 1.0, "ports": {"0": 1}}
    assert StatusUpdate.from_doc(damaged).ports is None
