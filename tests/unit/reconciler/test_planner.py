"""The reconciler's plan() against a real Store, with fake workers (tests/unit/reconciler/sim.py)."""

from __future__ import annotations

import itertools
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.unit.reconciler.sim import GIB, MIB, Sim
from warren.config import OrchestratorSettings
from warren.reconciler import plan
from warren.store import commands as c


def cluster(sim: Sim, *names: str, **node: Any) -> None:
    for name in names:
        sim.add_node(name, **node)


def image(task: dict[str, Any]) -> str:
    return str(orjson.loads(task["spec"])["image"])


def commands_of(sim: Sim, kind: type[Any]) -> list[Any]:
    return [cmd for p in sim.plans for cmd in p.commands if isinstance(cmd, kind)]


def converged(sim: Sim) -> bool:
    return not sim.plan().commands


# -- replicated services ---------------------------------------------------------------------------


def test_replicas_spread_over_nodes_one_task_per_slot(sim: Sim) -> None:
    cluster(sim, "w1", "w2", "w3")
    sim.create_service("web", image="nginx", replicas=6)
    first = sim.step()
    # Every task is placed by the pass that creates it.
    (create,) = first.commands
    assert isinstance(create, c.CreateTasks)
    assert sorted(t.slot for t in create.tasks) == [1, 2, 3, 4, 5, 6]
    assert {t.state for t in create.tasks} == {"assigned"}
    sim.settle()
    assert sim.by_node("web") == {"w1": 2, "w2": 2, "w3": 2}
    assert sorted(sim.slots("web")) == [1, 2, 3, 4, 5, 6]
    assert converged(sim)


def test_scale_up_down_and_to_zero(sim: Sim) -> None:
    cluster(sim, "w1", "w2")
    sim.create_service("web", image="nginx", replicas=5)
    sim.settle()
    sim.plans.clear()
    sim.update_service("web", replicas=2)
    sim.settle()
    assert sorted(sim.slots("web")) == [1, 2]
    (down,) = commands_of(sim, c.SetTasksDesired)
    assert down.message == "scaled down"
    slots = {t["id"]: t["slot"] for t in sim.tasks("web")}
    assert [slots[i] for i in down.task_ids] == [5, 4, 3]  # highest slots first
    assert {t["state"] for t in sim.tasks("web") if t["slot"] > 2} == {"shutdown"}

    sim.update_service("web", replicas=0)
    sim.settle()
    assert sim.live("web") == []
    assert converged(sim)

    sim.update_service("web", replicas=3)
    sim.settle()
    assert sorted(sim.slots("web")) == [1, 2, 3]
    assert len(sim.running("web")) == 3


def test_a_task_that_fits_nowhere_stays_pending_with_the_reason(sim: Sim) -> None:
    cluster(sim, "w1", "w2", memory=1 * GIB)
    sim.create_service("big", image="db", replicas=3, resources={"memory": 768 * MIB})
    sim.settle()
    assert len(sim.running("big")) == 2
    (pending,) = [t for t in sim.live("big") if t["state"] == "pending"]
    assert pending["node"] is None
    assert pending["message"] == "no suitable node: 2 nodes lack 768 MiB of free memory"
    # An idle cluster proposes nothing: the reason is rewritten only when it changes.
    assert converged(sim)

    sim.add_node("w3", memory=2 * GIB)
    sim.settle()
    assert sim.task(pending["id"])["node"] == "w3"
    assert len(sim.running("big")) == 3


def test_pending_task_is_placed_when_resources_free_up(sim: Sim) -> None:
    cluster(sim, "w1", cpus=2.0)
    sim.create_service("a", image="x", replicas=2, resources={"cpus": 1.0})
    sim.settle()
    sim.create_service("b", image="y", replicas=1, resources={"cpus": 1.5})
    sim.settle()
    (b,) = sim.live("b")
    assert b["state"] == "pending" and b["message"] == "no suitable node: 1 node lacks 1.5 free CPUs"
    sim.update_service("a", replicas=0)
    sim.settle()
    assert [t["state"] for t in sim.live("b")] == ["running"]


def test_constraints_and_drivers(sim: Sim) -> None:
    sim.add_node("eu-1", labels={"zone": "eu"})
    sim.add_node("eu-2", labels={"zone": "eu"}, drivers=("process",))
    sim.add_node("us-1", labels={"zone": "us"})
    sim.create_service("web", image="nginx", replicas=3, constraints=["node.labels.zone==eu"])
    sim.create_service("job", image="x", command=["sleep", "1"], driver="process", replicas=2)
    sim.settle()
    assert sim.by_node("web") == {"eu-1": 3}  # eu-2 has no docker driver
    # Planned in the same pass as web (services by name): job first, spread by name on empty nodes.
    assert sim.by_node("job") == {"eu-1": 1, "eu-2": 1}

    sim.create_service("nowhere", image="x", constraints=["node.labels.zone==ap"])
    sim.settle()
    (t,) = sim.live("nowhere")
    assert (
        t["message"]
        == "no suitable node: 2 nodes do not match node.labels.zone==ap, 1 node has no docker driver"
    )


def test_host_access_and_the_process_runtime_s_options(sim: Sim) -> None:
    sim.add_node("w1", drivers=("process",))
    sim.add_node("w2", allow_privileged=True, allow_devices=("/dev/serial",))
    sim.create_service("hub", image="x", container={"devices": [{"host": "/dev/serial/radio"}]})
    sim.create_service("admin", image="x", mode="global", container={"privileged": True})
    sim.create_service("job", image="x", command=["true"], driver="process",
                       container={"read_only": True, "user": "1000"})
    sim.settle()
    assert sim.by_node("hub") == {"w2": 1}
    assert sim.by_node("admin") == {"w2": 1}  # global: only where privileged tasks are allowed
    (job,) = sim.live("job")
    assert job["message"] == (
        "no suitable node: 2 nodes cannot apply container.read_only: not supported by the process runtime"
    )
    # Its user alone the process runtime has: placed once the spec asks for nothing else.
    sim.update_service("job", container={"user": "1000"})
    sim.settle()
    assert sim.by_node("job") == {"w1": 1}  # spread: w2 has two tasks already

    sim.create_service("cam", image="x", container={"devices": [{"host": "/dev/video0"}]})
    sim.settle()
    (cam,) = sim.live("cam")
    assert cam["message"] == (
        "no suitable node: 1 node has no docker driver, "
        "1 node does not allow device /dev/video0 (worker start --allow-device)"
    )


def test_bind_mounts_and_the_process_runtime_s_mounts(sim: Sim) -> None:
    sim.add_node("w1", drivers=("docker", "process"))
    sim.add_node("w2", drivers=("docker", "process"), allow_binds=("/srv/data",))
    sim.create_service("media", image="x", mounts=[{"type": "bind", "source": "/srv/data/m", "target": "/m"}])
    sim.create_service("snoop", image="x", mounts=[{"type": "bind", "source": "/etc", "target": "/e"}])
    sim.create_service("job", image="x", command=["true"], driver="process", mounts=[
        {"type": "volume", "source": "v", "target": "/v", "read_only": True},
        {"type": "tmpfs", "target": "/t"}])
    sim.settle()
    assert sim.by_node("media") == {"w2": 1}
    (snoop,) = sim.live("snoop")
    assert snoop["message"] == (
        "no suitable node: 2 nodes do not allow bind mount of /etc (worker start --allow-bind)"
    )
    (job,) = sim.live("job")
    assert job["message"] == ("no suitable node: 2 nodes cannot apply mounts[0].read_only, "
                              "mounts[1].type=tmpfs: not supported by the process runtime")
    # A volume and a bind (allowed) the process runtime has: placed once the spec asks for nothing else.
    sim.update_service("job", mounts=[{"type": "volume", "source": "v", "target": "/v"},
                                      {"type": "bind", "source": "/srv/data", "target": "/d"}])
    sim.settle()
    assert sim.by_node("job") == {"w2": 1}


def test_host_port_conflicts(sim: Sim) -> None:
    cluster(sim, "w1", "w2")
    sim.create_service("web", image="nginx", replicas=3,
                       publish=[{"host": 8080, "container": 80, "mode": "host"}])
    sim.settle()
    assert sim.by_node("web") == {"w1": 1, "w2": 1}
    (pending,) = [t for t in sim.live("web") if t["state"] == "pending"]
    assert pending["message"] == "no suitable node: 2 nodes already use host port 8080/tcp"


def test_docker_ingress_replicas_share_a_node(sim: Sim) -> None:
    # Docker maps an ingress replica's target on an ephemeral host port: nothing is held on the node.
    cluster(sim, "w1")
    sim.create_service("web", image="nginx", replicas=3, publish=[{"host": 8080, "container": 80}])
    sim.settle()
    assert sim.by_node("web") == {"w1": 3}
    assert sim.service("web")["spec"]["publish"][0]["mode"] == "ingress"


def test_a_process_ingress_replica_holds_its_target_port_on_its_node(sim: Sim) -> None:
    cluster(sim, "w1", "w2", drivers=("process",))
    sim.create_service("web", image="none", driver="process", command=["serve"], replicas=3,
                       publish=[{"host": 8080, "container": 8081}])
    sim.settle()
    assert sim.by_node("web") == {"w1": 1, "w2": 1}
    (pending,) = [t for t in sim.live("web") if t["state"] == "pending"]
    assert pending["message"] == "no suitable node: 2 nodes already use host port 8081/tcp"


# -- nodes going away --------------------------------------------------------------------------------


def test_node_down_fails_its_tasks_and_replaces_them_elsewhere_at_once(sim: Sim) -> None:
    cluster(sim, "w1", "w2", "w3")
    sim.create_service("web", image="nginx", replicas=6)
    sim.settle()
    on_w1 = {t["id"]: t["slot"] for t in sim.running("web") if t["node"] == "w1"}
    sim.node_down("w1")
    sim.plans.clear()
    first = sim.step()
    # The same pass asks them to stop and creates their replacements (no restart delay for a lost
    # node); the next one writes them failed.
    assert [type(cmd) for cmd in first.commands] == [c.SetTasksDesired, c.CreateTasks]
    assert first.commands[0].message == "node w1 is down"
    assert sorted(first.commands[0].task_ids) == sorted(on_w1)
    second = sim.step()
    assert [type(cmd) for cmd in second.commands] == [c.SetTaskStatuses]
    assert {(u.state, u.message) for u in second.commands[0].updates} == {("failed", "node w1 is down")}
    sim.settle()
    for task_id in on_w1:
        lost = sim.task(task_id)
        assert (lost["state"], lost["message"]) == ("failed", "node w1 is down")
    assert sim.by_node("web") == {"w2": 3, "w3": 3}
    assert sorted(sim.slots("web")) == [1, 2, 3, 4, 5, 6]
    # The node comes back: nothing moves (no rebalancing of running tasks).
    sim.node_up("w1")
    sim.settle()
    assert sim.by_node("web") == {"w2": 3, "w3": 3}


def test_lost_tasks_are_replaced_even_with_restart_policy_none(sim: Sim) -> None:
    cluster(sim, "w1", "w2")
    sim.create_service("job", image="x", replicas=2, restart={"condition": "none"})
    sim.settle()
    sim.node_down("w1")
    sim.settle()
    assert sim.by_node("job") == {"w2": 2}


def test_removed_node(sim: Sim) -> None:
    cluster(sim, "w1", "w2")
    sim.create_service("web", image="nginx", replicas=2)
    sim.settle()
    sim.remove_node("w1")
    sim.settle()
    assert sim.by_node("web") == {"w2": 2}
    assert any(t["message"] == "node w1 was removed" for t in sim.tasks("web"))


def test_drain_moves_tasks_away_and_places_none_there(sim: Sim) -> None:
    cluster(sim, "w1", "w2")
    sim.create_service("web", image="nginx", replicas=4)
    sim.settle()
    sim.drain("w1")
    sim.plans.clear()
    first = sim.step()
    desired = [cmd for cmd in first.commands if isinstance(cmd, c.SetTasksDesired)]
    assert [d.message for d in desired] == ["node drained"]
    # Replacements do not wait for the drained tasks to stop.
    assert any(isinstance(cmd, c.CreateTasks) for cmd in first.commands)
    sim.settle()
    assert sim.by_node("web") == {"w2": 4}
    sim.update_service("web", replicas=6)
    sim.settle()
    assert sim.by_node("web") == {"w2": 6}
    sim.activate("w1")
    sim.update_service("web", replicas=7)
    sim.settle()
    assert sim.by_node("web") == {"w1": 1, "w2": 6}


# -- global services ----------------------------------------------------------------------------------


def test_global_mode_follows_nodes(sim: Sim) -> None:
    cluster(sim, "w1", "w2")
    sim.add_node("w3", drivers=("process",))
    sim.create_service("agent", image="agent", mode="global")
    sim.settle()
    assert sim.by_node("agent") == {"w1": 1, "w2": 1}
    assert {t["slot"] for t in sim.live("agent")} == {None}

    sim.add_node("w4")
    sim.settle()
    assert sim.by_node("agent") == {"w1": 1, "w2": 1, "w4": 1}

    sim.drain("w2")
    sim.settle()
    assert sim.by_node("agent") == {"w1": 1, "w4": 1}
    sim.activate("w2")
    sim.settle()
    assert sim.by_node("agent") == {"w1": 1, "w2": 1, "w4": 1}

    sim.node_down("w4")
    sim.settle()
    assert sim.by_node("agent") == {"w1": 1, "w2": 1}  # not replaced on another node
    sim.node_up("w4")
    sim.settle()
    assert sim.by_node("agent") == {"w1": 1, "w2": 1, "w4": 1}

    sim.remove_node("w4")
    sim.settle()
    assert sim.by_node("agent") == {"w1": 1, "w2": 1}

    # A node that no longer matches the constraints loses its task.
    sim.update_service("agent", constraints=["node.name!=w1"])
    sim.settle()
    assert sim.by_node("agent") == {"w2": 1}
    stopped = [t for t in sim.tasks("agent") if t["node"] == "w1" and t["state"] == "shutdown"]
    assert stopped
    assert converged(sim)


def test_global_task_restarts_on_its_node(sim: Sim) -> None:
    cluster(sim, "w1", "w2")
    sim.create_service("agent", image="agent", mode="global")
    sim.settle()
    (on_w1,) = [t for t in sim.running("agent") if t["node"] == "w1"]
    sim.crash(on_w1["id"])
    sim.settle()
    assert sim.by_node("agent") == {"w1": 1, "w2": 1}
    assert len([t for t in sim.tasks("agent") if t["node"] == "w1"]) == 2


# -- restart policies ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("condition", "exit_code", "replaced"),
    [
        ("any", 1, True),
        ("any", 0, True),
        ("on-failure", 1, True),
        ("on-failure", 0, False),
        ("none", 1, False),
        ("none", 0, False),
    ],
)
def test_restart_conditions(sim: Sim, condition: str, exit_code: int, replaced: bool) -> None:
    cluster(sim, "w1")
    sim.create_service("job", image="x", restart={"condition": condition})
    sim.settle()
    (task,) = sim.running("job")
    sim.crash(task["id"], exit_code)
    sim.settle()
    live = sim.live("job")
    assert len(live) == (1 if replaced else 0)
    if replaced:
        assert live[0]["slot"] == 1 and live[0]["id"] != task["id"]
    assert converged(sim)


def test_an_empty_slot_gets_a_task_when_the_spec_changes(sim: Sim) -> None:
    cluster(sim, "w1")
    sim.create_service("job", image="x", restart={"condition": "none"})
    sim.settle()
    sim.crash(sim.running("job")[0]["id"])
    sim.settle()
    assert sim.live("job") == []
    sim.update_service("job", replicas=1)  # not a spec change of its tasks
    sim.settle()
    assert sim.live("job") == []
    sim.update_service("job", image="x:2")
    sim.settle()
    (task,) = sim.running("job")
    assert image(task) == "x:2"


def test_max_attempts(sim: Sim) -> None:
    cluster(sim, "w1")
    sim.create_service("job", image="x", restart={"condition": "any", "max_attempts": 2})
    sim.settle()
    for _ in range(3):
        sim.advance(60)  # not a crash loop: no backoff
        sim.crash(sim.running("job")[0]["id"])
        sim.settle()
    # The first task and two replacements ran; none after the third end.
    assert sim.live("job") == []
    assert [t["state"] for t in sim.tasks("job")] == ["failed", "failed", "failed"]
    sim.advance(3600)
    assert converged(sim)


def test_restart_delay_is_reported_through_wake_at(sim: Sim) -> None:
    cluster(sim, "w1")
    sim.create_service("job", image="x", restart={"condition": "any", "delay_s": 5.0})
    sim.settle()
    sim.advance(100)
    crashed_at = sim.now
    sim.crash(sim.running("job")[0]["id"])
    p = sim.settle()
    assert sim.live("job") == []
    assert p.wake_at == pytest.approx(crashed_at + 5.0)
    sim.advance(4.9)
    assert converged(sim)
    sim.now = p.wake_at
    sim.settle()
    assert len(sim.running("job")) == 1


def test_backoff_grows_while_a_task_keeps_failing_at_start(tmp_path: Path) -> None:
    settings = OrchestratorSettings(
        restart_backoff_initial_s=0.5, restart_backoff_max_s=3.0, task_history_per_slot=10
    )
    sim = Sim(tmp_path, settings)
    cluster(sim, "w1")
    sim.failing_images.add("broken")
    sim.create_service("job", image="broken", restart={"condition": "any", "delay_s": 1.0})
    waits = []
    for _ in range(7):
        p = sim.settle()
        assert p.wake_at is not None
        waits.append(round(p.wake_at - sim.now, 3))
        sim.now = p.wake_at
    # delay_s, then delay_s + 0.5, 1, 2, capped at 3.
    assert waits == [1.0, 1.5, 2.0, 3.0, 4.0, 4.0, 4.0]


def test_backoff_resets_after_a_task_ran_long_enough(sim: Sim) -> None:
    cluster(sim, "w1")
    sim.create_service("job", image="x")
    sim.settle()
    for _ in range(3):  # three quick crashes
        sim.advance(1)
        sim.crash(sim.running("job")[0]["id"])
        p = sim.settle()
        if p.wake_at is not None:
            sim.now = p.wake_at
            sim.settle()
    sim.advance(sim.settings.restart_window_s + 1)  # this one runs long
    sim.crash(sim.running("job")[0]["id"])
    p = sim.settle()
    assert p.wake_at is None and len(sim.running("job")) == 1  # replaced at once


# -- rolling updates ----------------------------------------------------------------------------------


def watch_update(sim: Sim, service: str) -> dict[str, int]:
    """Record, at every intermediate state, how many slots have no running task of either spec and
    how many tasks run at once."""
    seen = {"max_without_running": 0, "max_live": 0, "min_running": 10**6}

    def observe() -> None:
        running = sim.running(service)
        replicas = sim.service(service)["spec"]["replicas"]
        covered = {t["slot"] for t in running}
        seen["max_without_running"] = max(seen["max_without_running"], replicas - len(covered))
        seen["max_live"] = max(seen["max_live"], len(sim.live(service)))
        seen["min_running"] = min(seen["min_running"], len(running))

    sim.observers.append(observe)
    return seen


def test_rolling_update_stop_first_parallelism_2(sim: Sim) -> None:
    cluster(sim, "w1", "w2", "w3")
    sim.create_service("web", image="v1", replicas=5, update={"parallelism": 2, "monitor_s": 2.0})
    sim.settle()
    seen = watch_update(sim, "web")
    started = sim.now
    sim.update_service("web", image="v2")
    sim.run_until(lambda: sim.update_state("web") == "completed")
    assert sorted(image(t) for t in sim.running("web")) == ["v2"] * 5
    assert sorted(sim.slots("web")) == [1, 2, 3, 4, 5]
    # Never more than two slots down at once, never two tasks in a slot.
    assert seen["max_without_running"] == 2
    assert seen["max_live"] == 5
    # Three batches, each monitored for 2 s.
    assert sim.now - started == pytest.approx(6.0)
    status = sim.service("web")["update_status"]
    assert status["message"] == "update completed" and status["started_at"] == started
    assert converged(sim)


def test_rolling_update_start_first_parallelism_2_waits_for_health(sim: Sim) -> None:
    cluster(sim, "w1", "w2", "w3")
    health = {"kind": "tcp", "port": 80}
    sim.create_service(
        "web",
        image="v1",
        replicas=4,
        health=health,
        update={"parallelism": 2, "order": "start-first", "delay_s": 1.0},
    )
    sim.settle()
    seen = watch_update(sim, "web")
    started = sim.now
    sim.update_service("web", image="v2")
    sim.run_until(lambda: sim.update_state("web") == "completed")
    assert sorted(image(t) for t in sim.running("web")) == ["v2"] * 4
    # Start-first: every slot keeps a running task throughout; at most two extra tasks at once.
    assert seen["max_without_running"] == 0
    assert seen["min_running"] >= 4
    assert seen["max_live"] == 6
    # Two batches: monitor (2 s) + delay (1 s) + monitor (2 s).
    assert sim.now - started == pytest.approx(5.0)

    # A new task that never becomes healthy holds its old one in place.
    sim.unhealthy_images.add("v3")
    sim.update_service("web", image="v3")
    sim.settle()
    assert len(sim.running("web")) == 6
    assert sorted(image(t) for t in sim.running("web")) == ["v2", "v2", "v2", "v2", "v3", "v3"]
    assert sim.update_state("web") == "updating"


def test_start_first_falls_back_to_stop_first_when_the_new_task_cannot_be_placed(sim: Sim) -> None:
    cluster(sim, "w1", "w2")
    sim.create_service(
        "web",
        image="v1",
        replicas=2,
        publish=[{"host": 8080, "container": 80, "mode": "host"}],
        update={"order": "start-first", "monitor_s": 0.0},
    )
    sim.settle()
    sim.update_service("web", image="v2")
    sim.run_until(lambda: sim.update_state("web") == "completed")
    assert sorted(image(t) for t in sim.running("web")) == ["v2", "v2"]
    assert sim.by_node("web") == {"w1": 1, "w2": 1}


def test_update_pauses_when_a_new_task_fails(sim: Sim) -> None:
    cluster(sim, "w1", "w2")
    sim.create_service("web", image="v1", replicas=4)
    sim.settle()
    sim.failing_images.add("bad")
    sim.update_service("web", image="bad")
    sim.settle()
    status = sim.service("web")["update_status"]
    assert status["state"] == "paused"
    assert (
        status["message"].startswith("update paused: task t-") and "exited with status 1" in status["message"]
    )
    # Parallelism 1: only one slot was touched; the other three keep their old tasks.
    assert sorted(image(t) for t in sim.running("web")) == ["v1", "v1", "v1"]
    sim.advance(120)
    sim.settle()
    assert sim.update_state("web") == "paused"
    assert sorted(image(t) for t in sim.running("web")) == ["v1", "v1", "v1"]
    # A new spec resumes.
    sim.update_service("web", image="v2")
    sim.run_until(lambda: sim.update_state("web") == "completed")
    assert sorted(image(t) for t in sim.running("web")) == ["v2"] * 4


def test_update_rolls_back_when_a_new_task_fails(sim: Sim) -> None:
    cluster(sim, "w1", "w2")
    sim.create_service("web", image="v1", replicas=3, update={"failure_action": "rollback", "parallelism": 2})
    sim.settle()
    sim.failing_images.add("bad")
    sim.plans.clear()
    sim.update_service("web", image="bad")
    sim.run_until(lambda: sim.update_state("web") == "rollback_completed")
    assert len(commands_of(sim, c.RollbackService)) == 1
    states = [cmd.status["state"] for cmd in commands_of(sim, c.SetUpdateStatus)]
    assert states == ["updating", "rollback_started", "rollback_completed"]
    assert sim.service("web")["spec"]["image"] == "v1"
    assert sorted(image(t) for t in sim.running("web")) == ["v1"] * 3
    assert converged(sim)


def test_global_rolling_update_one_node_at_a_time(sim: Sim) -> None:
    cluster(sim, "w1", "w2", "w3")
    sim.create_service("agent", image="a1", mode="global", update={"monitor_s": 1.0})
    sim.settle()
    seen = {"max_down": 0}

    def observe() -> None:
        seen["max_down"] = max(seen["max_down"], 3 - len(sim.by_node("agent")))

    sim.observers.append(observe)
    started = sim.now
    sim.update_service("agent", image="a2")
    sim.run_until(lambda: sim.update_state("agent") == "completed")
    assert sorted(image(t) for t in sim.running("agent")) == ["a2"] * 3
    assert sim.by_node("agent") == {"w1": 1, "w2": 1, "w3": 1}
    assert seen["max_down"] == 1
    assert sim.now - started == pytest.approx(3.0)


def test_a_node_lost_during_an_update_is_not_a_failure_of_the_update(sim: Sim) -> None:
    cluster(sim, "w1", "w2")
    sim.create_service("web", image="v1", replicas=2, update={"failure_action": "rollback", "monitor_s": 5.0})
    sim.settle()
    sim.update_service("web", image="v2")
    sim.settle()
    (new,) = [t for t in sim.running("web") if image(t) == "v2"]
    sim.node_down(new["node"])
    sim.run_until(lambda: sim.update_state("web") == "completed")
    assert sim.service("web")["spec"]["image"] == "v2"
    assert sorted(image(t) for t in sim.running("web")) == ["v2", "v2"]


def test_mode_change_replicated_to_global(sim: Sim) -> None:
    cluster(sim, "w1", "w2")
    sim.create_service("web", image="v1", replicas=3)
    sim.settle()
    sim.plans.clear()
    sim.update_service("web", mode="global")
    sim.settle()
    assert sim.by_node("web") == {"w1": 1, "w2": 1}
    assert {t["slot"] for t in sim.live("web")} == {None}
    (stop,) = commands_of(sim, c.SetTasksDesired)
    assert stop.message == "service mode changed" and len(stop.task_ids) == 3
    sim.update_service("web", mode="replicated", replicas=1)
    sim.settle()
    assert sorted(sim.slots("web")) == [1]


def test_scaling_is_not_an_update(sim: Sim) -> None:
    cluster(sim, "w1")
    sim.create_service("web", image="v1", replicas=1)
    sim.settle()
    sim.update_service("web", replicas=3)
    sim.settle()
    assert sim.service("web")["update_status"] is None


# -- history, convergence, determinism, speed ---------------------------------------------------------


def test_history_is_bounded_per_slot(tmp_path: Path) -> None:
    sim = Sim(tmp_path, OrchestratorSettings(task_history_per_slot=2))
    cluster(sim, "w1")
    sim.create_service("web", image="x", replicas=2)
    sim.settle()
    for _ in range(5):
        sim.advance(60)
        for t in sim.running("web"):
            if t["slot"] == 1:
                sim.crash(t["id"])
        sim.settle()
    slot1 = [t for t in sim.tasks("web") if t["slot"] == 1]
    assert [t["state"] for t in slot1] == ["failed", "failed", "running"]
    assert len([t for t in sim.tasks("web") if t["slot"] == 2]) == 1
    assert converged(sim)


def test_same_state_same_plan(sim: Sim) -> None:
    cluster(sim, "w1", "w2", "w3")
    sim.create_service("web", image="v1", replicas=4, publish=[{"host": 80, "container": 80, "mode": "host"}])
    sim.create_service("agent", image="a", mode="global")
    sim.settle()
    sim.node_down("w2")
    sim.update_service("agent", image="a2")

    def ids() -> Any:
        counter = itertools.count()
        return lambda: f"t-{next(counter):010x}"

    first = plan(sim.store.conn, sim.now, sim.settings, ids())
    second = plan(sim.store.conn, sim.now, sim.settings, ids())
    assert first.commands
    assert [c.encode(cmd) for cmd in first.commands] == [c.encode(cmd) for cmd in second.commands]
    assert first.wake_at == second.wake_at


def test_a_thousand_tasks_plan_quickly(sim: Sim) -> None:
    for i in range(20):
        sim.add_node(f"w{i:02d}", cpus=64.0, memory=256 * GIB)
    for i in range(10):
        sim.create_service(
            f"svc{i}", image=f"img{i}", replicas=100, resources={"cpus": 0.1, "memory": 64 * MIB}
        )
    sim.settle()
    assert sum(len(sim.running(f"svc{i}")) for i in range(10)) == 1000
    best = float("inf")
    for _ in range(5):
        began = time.perf_counter()
        p = sim.plan()
        best = min(best, time.perf_counter() - began)
        assert p.commands == []
    print(f"\nplan() over 1,000 running tasks: {best * 1000:.1f} ms")
    # One node down: 50 tasks fail and are replaced in one pass.
    sim.node_down("w00")
    began = time.perf_counter()
    p = sim.plan()
    print(f"plan() replacing 50 lost tasks: {(time.perf_counter() - began) * 1000:.1f} ms")
    created = [t for cmd in p.commands if isinstance(cmd, c.CreateTasks) for t in cmd.tasks]
    assert len(created) == 50 and all(t.node not in (None, "w00") for t in created)
