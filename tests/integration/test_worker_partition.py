"""A worker cut off from the managers at the network layer (namespaces + iptables) keeps its tasks
running and restarts a crashed one itself; meanwhile the manager writes it down and runs its tasks on
the other worker; after the heal the cut-off worker stops what was replaced: no task runs twice."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.netns import NetnsLab
from tests.integration.workers import Fleet, env_value, netns_fleet, task_processes
from warren.testing.wait import eventually

PORTS = (8080, 7946, 9090)


@pytest.fixture
def lab_fleet(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[NetnsLab, Fleet]]:
    with netns_fleet(3, PORTS, tmp_path, request) as made:
        yield made


def live_tasks(service: str) -> dict[str, int]:
    """task ID -> pid of every live process of the service."""
    return {env_value(pid, "WARREN_TASK_ID"): pid for pid in task_processes(f"WARREN_SERVICE={service}")}


def test_cut_off_worker_keeps_and_restarts_its_tasks_then_reconciles(
    lab_fleet: tuple[NetnsLab, Fleet],
) -> None:
    lab, fleet = lab_fleet
    fleet.start_managers(1)
    cut = fleet.add_worker("process", prefix=lab.prefix(2))  # host 1 is the manager
    other = fleet.add_worker("process", prefix=lab.prefix(3))
    fleet.create("steady", replicas=2, image="local", driver="process", command=["sleep", "100000"])
    tasks = fleet.wait_running("steady", 2)
    assert {t["node"] for t in tasks} == {cut.name, other.name}
    mine = next(t for t in tasks if t["node"] == cut.name)
    pid = eventually(lambda: live_tasks("steady").get(mine["id"]), 20, "the cut-off worker's process")

    lab.isolate(2)
    # Autonomy: the process keeps running; killed, it is restarted in place (same task, new process).
    os.kill(pid, signal.SIGKILL)
    restarted = eventually(
        lambda: (p := live_tasks("steady").get(mine["id"])) and p != pid and p,
        20,
        "the cut-off worker to restart its crashed task by itself",
        detail=cut.log_tail,
    )
    assert restarted != pid

    # Meanwhile the manager writes the worker down and runs both replicas on the other worker. (The
    # worker counts itself cut off within heartbeat + session timeout, 3 s, so it can restart its task
    # before the manager's 5 s grace ends: wait for the manager's side rather than for two running.)
    eventually(
        lambda: fleet.cli("node", "inspect", cut.name, "-o", "json").ok().stdout.count('"down"'),
        30,
        "the manager to write the cut-off worker down",
    )
    tasks = fleet.wait_running("steady", 2, timeout=30)
    assert {t["node"] for t in tasks} == {other.name}
    assert live_tasks("steady").get(mine["id"]) == restarted, "still running on the cut-off worker"

    lab.heal(2)
    eventually(
        lambda: fleet.cli("node", "inspect", cut.name, "-o", "json").ok().stdout.count('"ready"'),
        30,
        "the healed worker back to ready",
    )
    running = {t["id"] for t in fleet.wait_running("steady", 2)}
    final = eventually(
        lambda: (lambda live: live if set(live) == running else None)(live_tasks("steady")),
        30,
        "exactly the manager's running tasks to have processes (the replaced one stopped)",
        detail=fleet.log_tails,
    )
    assert mine["id"] not in final
    assert len(final) == 2
