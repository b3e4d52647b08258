"""Bytes overwritten in a node's SQLite files, under real daemons: a worker restarted on a damaged
worker.db sets it aside and gets its tasks back from the manager without duplicates (it adopts the
processes it left running); a manager restarted on a damaged warren.db sets it aside and comes back
with the full state, rebuilt from its snapshot plus the log."""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.integration.managers import TIMER_FLAGS, ManagerCluster, api
from tests.integration.workers import Fleet, fleets, task_processes
from warren.testing.wait import eventually

pytestmark = pytest.mark.integration

PAGE = 4096


def damage(path: Path) -> None:
    """Overwrite the file's header and a b-tree page's header in the middle with 0xff."""
    size = path.stat().st_size
    with open(path, "r+b") as f:
        for offset in (0, (size // PAGE // 2) * PAGE):
            f.seek(offset)
            f.write(b"\xff" * 16)


@pytest.fixture
def fleet(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Fleet]:
    with fleets(tmp_path, request) as make:
        made = make()
        made.start_managers(1)
        yield made


def test_worker_restarted_on_a_damaged_worker_db_gets_its_tasks_back_without_duplicates(fleet: Fleet) -> None:
    worker = fleet.add_worker("process")
    fleet.create("kept", replicas=3, image="local", driver="process", command=["sleep", "100000"])
    tasks = {t["id"]: t for t in fleet.wait_running("kept", 3)}
    pids = sorted(task_processes("WARREN_SERVICE=kept"))
    assert len(pids) == 3
    assert worker.stop() == 0
    db = worker.data_dir / "worker.db"
    damage(db)
    damaged = db.read_bytes()

    worker.start()
    # This incarnation connected, got its assignments and took over each task's process (with an
    # empty cache, only the processes' labels tell it they are its own).
    eventually(lambda: "Connected to manager" in worker.output(), 30, "the restarted worker to connect",
             detail=worker.log_tail)
    eventually(lambda: worker.errors().count(": adopted its running container") == 3, 30,
             "the restarted worker to adopt its 3 tasks", detail=worker.log_tail)
    again = {t["id"]: t for t in fleet.wait_running("kept", 3)}
    assert again.keys() == tasks.keys(), "the same tasks, not replacements"
    assert sorted(task_processes("WARREN_SERVICE=kept")) == pids, "adopted: no process started twice"
    (aside,) = worker.data_dir.glob("worker.db.damaged-*")
    assert aside.read_bytes() == damaged
    log = worker.errors()
    assert "WARNING" in log and "moved aside" in log and "not a database" in log, worker.log_tail()
    assert "resumed" in worker.output(), "its identity was kept: it resumed, it did not join again"

    # And the new worker.db is in use: a change reaches the worker and the cache records it.
    fleet.update("kept", replicas=1)
    eventually(lambda: len(task_processes("WARREN_SERVICE=kept")) == 1, 30, "the scale-down to 1 process")
    assert len(fleet.running("kept")) == 1


def test_manager_restarted_on_a_damaged_state_file_comes_back_with_the_full_state(
    make_managers: Callable[..., ManagerCluster],
) -> None:
    snapshots = ["--raft-snapshot-threshold", "30", "--raft-log-keep", "0"]
    cluster = make_managers(extra_flags=[*TIMER_FLAGS, *snapshots])
    manager = cluster.init()
    with api(manager.api_addr, 10.0) as client:
        for name in ("db-password", "api-key"):
            value = base64.b64encode(f"value of {name}".encode()).decode()
            assert client.post("/v1/secrets", json={"name": name, "data": value}).status_code == 201
        for i in range(45):  # past the snapshot threshold: the state is a snapshot plus log entries
            spec = {"name": f"s{i}", "image": "busybox", "replicas": i % 3}
            if i == 0:
                spec["secrets"] = ["db-password"]
            response = client.post("/v1/services", json=spec)
            assert response.status_code == 201, response.text
        eventually(lambda: manager.metrics()["warren_raft_snapshot_index"] >= 30, 20, "a snapshot")
        before = {
            path: client.get(path).json() for path in ("/v1/services", "/v1/secrets", "/v1/nodes")
        }
    assert manager.stop() == 0
    db = manager.data_dir / "warren.db"
    damage(db)
    damaged = db.read_bytes()

    manager.restart()
    with api(manager.api_addr, 10.0) as client:
        after = {path: client.get(path).json() for path in before}
    assert after["/v1/services"] == before["/v1/services"]
    assert after["/v1/secrets"] == before["/v1/secrets"]
    assert [n["name"] for n in after["/v1/nodes"]] == [n["name"] for n in before["/v1/nodes"]]
    assert len(after["/v1/services"]) == 45
    (aside,) = manager.data_dir.glob("warren.db.damaged-*")
    assert aside.read_bytes() == damaged
    log = manager.errors()
    assert "moved aside" in log and "rebuilt from snapshot and log" in log, manager.log_tail()
    assert "state restored from" in log and "/snapshots/" in log, manager.log_tail()
