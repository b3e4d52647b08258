"""Named volumes on a real cluster of process-runtime workers (`warren worker start`): sticky placement
across two workers (a slot's task goes back to the node holding its volume; with `wait` it stays
pending, saying why, while that node is down, and finds its data when it is back; `reschedule` moves
it onto a new, empty volume), `warren volume ls|rm` (refused in use, done after `service rm`), and a
volume's task and data through a manager failover.

Each task appends its ID to `$WARREN_MOUNT_DATA/log` (its volume, mounted at /data) as it starts, so
the log says which tasks ran on that volume.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.workers import Fleet, WorkerProc, fleets
from warren.testing.wait import eventually

pytestmark = pytest.mark.integration

RUN = secrets.token_hex(3)
APPEND = 'sh -c \'echo "$WARREN_TASK_ID" >> "$WARREN_MOUNT_DATA/log"; exec sleep 300\''


@pytest.fixture(scope="module")
def fleet(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    with fleets(tmp_path_factory.mktemp("volumes"), request) as make:
        fleet = make()
        fleet.start_managers(1)
        fleet.add_worker("process")
        fleet.add_worker("process")
        yield fleet


def create(fleet: Fleet, name: str, volume: str, *flags: str) -> None:
    fleet.cli("service", "create", "--detach", name, "--driver", "process", "--image", "none",
              "--command", APPEND,
              "--mount", f"type=volume,src={volume},dst=/data", *flags).ok()


def worker_named(fleet: Fleet, node: str) -> WorkerProc:
    (worker,) = [w for w in fleet.workers if w.has_name() and w.name == node]
    return worker


def log_of(worker: WorkerProc, volume: str) -> list[str]:
    path = worker.data_dir / "volumes" / volume / "log"
    return path.read_text().split() if path.exists() else []


def volumes(fleet: Fleet) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = json.loads(fleet.cli("volume", "ls", "-o", "json").ok().stdout)
    return result


def listed(fleet: Fleet, volume: str, timeout: float = 20.0) -> list[tuple[str, list[str]]]:
    """Until `volume ls` shows `volume` on some node: its (node, services) entries."""
    return eventually(lambda: [(v["node"], v["services"]) for v in volumes(fleet) if v["name"] == volume],
                      timeout, f"volume {volume} in `warren volume ls`")


def crash(worker: WorkerProc) -> None:
    """The machine goes away: the agent and its tasks' processes are killed."""
    worker.kill()
    worker.kill_tasks()


def pending_reason(fleet: Fleet, service: str, timeout: float = 30.0) -> str:
    def waiting() -> str | None:
        tasks = fleet.tasks(service)
        live = [t for t in tasks if t["desired_state"] == "running" and t["state"] == "pending"]
        return live[0]["message"] if live and live[0]["message"] else None

    return eventually(waiting, timeout, f"a pending task of {service} with its reason")


def test_wait_keeps_the_task_for_its_node_and_it_finds_its_data_there(fleet: Fleet) -> None:
    volume = f"data-{RUN}"
    create(fleet, "db", volume)
    (first,) = fleet.wait_running("db", 1)
    home = worker_named(fleet, first["node"])
    eventually(lambda: log_of(home, volume) == [first["id"]], 10, "the first task's line in its volume")
    assert listed(fleet, volume) == [(home.name, ["db"])]

    crash(home)
    reason = pending_reason(fleet, "db")
    assert reason == f"waiting for node {home.name} (down), which holds volume {volume} (volume policy wait)"
    ps = fleet.cli("service", "ps", "db", "--no-trunc").ok()
    assert reason in ps.stdout, ps.stdout
    assert fleet.running("db") == [], "not started on the other worker"

    home.start()
    home.wait_ready(fleet.addr)
    (back,) = fleet.wait_running("db", 1)
    assert back["node"] == home.name and back["id"] != first["id"]
    eventually(lambda: log_of(home, volume) == [first["id"], back["id"]], 10, "its data, and its own line")

    # In use: refused, naming the service. After `service rm` (which keeps it), removed.
    refused = fleet.cli("volume", "rm", volume)
    assert refused.returncode == 1 and f"volume '{volume}' is in use by service db" in refused.stderr
    fleet.cli("service", "rm", "db").ok()
    assert (home.data_dir / "volumes" / volume).is_dir()
    assert listed(fleet, volume) == [(home.name, [])]
    removed = fleet.cli("volume", "rm", volume).ok()
    assert removed.stdout == f"Volume {volume} removed from node {home.name}\n"
    assert not (home.data_dir / "volumes" / volume).exists()
    assert [v for v in volumes(fleet) if v["name"] == volume] == []


def test_reschedule_moves_the_task_onto_a_new_empty_volume(fleet: Fleet) -> None:
    volume = f"cache-{RUN}"
    create(fleet, "cache", volume, "--volume-policy", "reschedule")
    (first,) = fleet.wait_running("cache", 1)
    home = worker_named(fleet, first["node"])
    other = next(w for w in fleet.workers if w is not home)
    eventually(lambda: log_of(home, volume) == [first["id"]], 10, "the first task's line")
    listed(fleet, volume)

    crash(home)
    moved = eventually(lambda: [t for t in fleet.running("cache") if t["node"] == other.name], 30,
                       "the task started on the other worker")
    eventually(lambda: log_of(other, volume) == [moved[0]["id"]], 10, "a new volume with only its line")

    home.start()
    home.wait_ready(fleet.addr)
    # Two nodes hold a volume of that name now; the task stays with its new one.
    eventually(lambda: sorted(v["node"] for v in volumes(fleet) if v["name"] == volume)
               == sorted([home.name, other.name]), 20, "both volumes listed")
    (still,) = fleet.wait_running("cache", 1)
    assert still["id"] == moved[0]["id"]
    fleet.cli("service", "rm", "cache").ok()
    which = fleet.cli("volume", "rm", volume)
    assert which.returncode == 1 and "--node" in which.stderr, which.stderr
    for worker in (home, other):
        fleet.cli("volume", "rm", volume, "--node", worker.name).ok()
        assert not (worker.data_dir / "volumes" / volume).exists()


@pytest.fixture
def ha_fleet(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Fleet]:
    with fleets(tmp_path, request) as make:
        fleet = make()
        fleet.start_managers(3)
        fleet.add_worker("process")
        fleet.add_worker("process")
        yield fleet


def test_a_volumes_task_and_data_stay_through_a_manager_failover(ha_fleet: Fleet) -> None:
    fleet, volume = ha_fleet, f"state-{RUN}"
    create(fleet, "broker", volume)
    (first,) = fleet.wait_running("broker", 1)
    home = worker_named(fleet, first["node"])
    listed(fleet, volume)

    old = fleet.managers.leader()
    old.kill()
    new = fleet.managers.leader()
    assert new is not old
    # The task was not moved, and the new leader knows where its volume is.
    (same,) = fleet.wait_running("broker", 1)
    assert same["id"] == first["id"] and same["node"] == home.name
    assert listed(fleet, volume) == [(home.name, ["broker"])]
    # Its process dies: it starts again on the same node, on the same data (restarted in place by the
    # worker if it has no session with the new leader yet, else a replacement the leader places there).
    (pid,) = home.task_pids()
    os.kill(pid, signal.SIGKILL)

    def again() -> list[str] | None:
        lines = log_of(home, volume)
        return lines if len(lines) == 2 else None

    lines = eventually(again, 30, "a second start's line in the volume's log")
    (now,) = fleet.wait_running("broker", 1)
    assert now["node"] == home.name
    assert lines == [first["id"], now["id"]]
