"""A worker cut off from the managers at the network layer (namespaces + iptables) keeps its tasks
running and restarts a crashed one itself; meanwhile the manager writes it down and runs its tasks on
the other worker; after the heal the cut-off worker stops what was replaced: no task runs twice."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.managers import api, get_json
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


@pytest.fixture
def lab_fleet4(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[NetnsLab, Fleet]]:
    with netns_fleet(4, PORTS, tmp_path, request) as made:
        yield made


def test_a_leader_cut_off_from_the_managers_but_not_its_workers_gives_their_sessions_up(
    lab_fleet4: tuple[NetnsLab, Fleet],
) -> None:
    """The leader loses the other managers but not the worker: it must not keep the worker's session,
    or the new leader, hearing nothing from the worker, takes it for down and starts its tasks again
    elsewhere while they still run (the chaos run's slots run twice, issue 19). The worker moves to the
    new leader: a change made there reaches it, it is never written down, its task never replaced."""
    lab, fleet = lab_fleet4
    fleet.start_managers(3)
    managers = fleet.managers.managers  # hosts 1-3
    old = fleet.leader
    others = [m for m in managers if m is not old]
    # The worker's session is with the leader itself (its first manager), not through a follower.
    addrs = [m.api_addr for m in [old, *others]]
    worker = fleet.add_worker("process", prefix=lab.prefix(4), managers=addrs)
    fleet.create("steady", replicas=1, image="local", driver="process", command=["sleep", "100000"])
    (task,) = fleet.wait_running("steady", 1)
    pid = eventually(lambda: live_tasks("steady").get(task["id"]), 20, "the task's process")

    lab.isolate(managers.index(old) + 1, from_hosts=[managers.index(m) + 1 for m in others])
    new = fleet.managers.leader(among=others)
    with api(new.api_addr, 15.0) as client:
        assert client.patch("/v1/services/steady", json={"replicas": 2}).status_code == 200

    def both_running() -> list[dict[str, object]] | None:
        tasks = get_json(new.api_addr, "/v1/services/steady/tasks?consistent=true", timeout=10)
        running = [t for t in tasks if t["state"] == "running" and t["desired_state"] == "running"]
        return running if len(running) == 2 else None

    running = eventually(both_running, 45, "the scale-up made on the new leader to run on the worker",
                         detail=fleet.log_tails)  # fmt: skip
    assert task["id"] in {t["id"] for t in running}, f"the first task was replaced: {running}"
    assert {t["node"] for t in running} == {worker.name}
    assert live_tasks("steady").get(task["id"]) == pid, "the first task's process was restarted"
    events = get_json(new.api_addr, "/v1/events?type=node", timeout=10)["events"]
    downs = [e for e in events if e["actor"] == worker.name and e["action"] == "down"]
    assert not downs, f"the new leader wrote the worker down: {downs}\n{fleet.log_tails(80)}"
    lab.heal()
