"""Services on real workers, the same lifecycle on both runtimes: Docker (the real engine, the local
busybox image) and plain processes. One manager and two workers (labels zone=a and zone=b) are shared
by the module's tests; each test uses services of its own and leaves the workers as it found them.
"""

from __future__ import annotations

import os
import signal
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.images import ensure_image
from tests.integration.workers import (
    Fleet,
    containers,
    docker_client,
    env_value,
    fleets,
    require_docker,
    task_processes,
)
from warren.testing.wait import eventually

RUNTIMES = ("docker", "process")


class Kind:
    """How a test talks about tasks on one runtime: their spec, and what actually runs."""

    def __init__(self, runtime: str, cluster_id: str) -> None:
        self.runtime = runtime
        self.cluster_id = cluster_id

    def spec(self, *command: str, **extra: Any) -> dict[str, Any]:
        argv = list(command) or ["sleep", "100000"]
        if self.runtime == "docker":
            return {"image": ensure_image(), "command": argv, **extra}
        return {"image": "local", "driver": "process", "command": argv, **extra}

    def instances(self, service: str) -> set[str]:
        """IDs of what runs for the service right now: container IDs, or task IDs of live processes."""
        if self.runtime == "docker":
            return {c["Id"] for c in containers(self.cluster_id, **{"warren.service.name": service})}
        return {
            env_value(pid, "WARREN_TASK_ID")
            for pid in task_processes(f"WARREN_SERVICE={service}")
        }

    def kill(self, task: dict[str, Any]) -> None:
        """SIGKILL the task's container or process, as a crash would."""
        if self.runtime == "docker":
            docker_client().api.kill(task["container_id"])
        else:
            for pid in task_processes(f"WARREN_TASK_ID={task['id']}"):
                os.kill(pid, signal.SIGKILL)


@pytest.fixture(scope="module", params=RUNTIMES)
def cluster(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Fleet, Kind]]:
    runtime = request.param
    if runtime == "docker":
        require_docker()
        ensure_image()
    with fleets(tmp_path_factory.mktemp(f"workers-{runtime}"), request) as make:
        fleet = make()
        fleet.start_managers(1)
        fleet.add_worker(runtime, labels=["zone=a"])
        fleet.add_worker(runtime, labels=["zone=b"])
        yield fleet, Kind(runtime, fleet.managers.managers[0].info()["cluster_id"])


def wait_instances(kind: Kind, service: str, count: int, timeout: float = 30.0) -> set[str]:
    """Until exactly `count` containers / processes run for the service; their IDs."""
    found: set[str] = set()

    def exact() -> bool:
        nonlocal found
        found = kind.instances(service)
        return len(found) == count

    eventually(exact, timeout, f"{count} instances of {service} on {kind.runtime}")
    return found


def test_replicas_spread_across_both_workers(cluster: tuple[Fleet, Kind]) -> None:
    fleet, kind = cluster
    fleet.create("spread", replicas=4, **kind.spec())
    tasks = fleet.wait_running("spread", 4)
    assert Counter(t["node"] for t in tasks) == {w.name: 2 for w in fleet.workers}
    assert sorted(t["slot"] for t in tasks) == [1, 2, 3, 4]
    wait_instances(kind, "spread", 4)
    fleet.cli("service", "rm", "spread").ok()
    wait_instances(kind, "spread", 0)


def test_scale_up_down_and_to_zero(cluster: tuple[Fleet, Kind]) -> None:
    fleet, kind = cluster
    fleet.create("scaled", replicas=1, **kind.spec())
    fleet.wait_running("scaled", 1)
    for n in (3, 1, 0, 2):
        fleet.cli("service", "scale", "--detach", "scaled", str(n)).ok()
        tasks = fleet.wait_running("scaled", n)
        assert sorted(t["slot"] for t in tasks) == list(range(1, n + 1))
        wait_instances(kind, "scaled", n)
    fleet.cli("service", "rm", "scaled").ok()
    wait_instances(kind, "scaled", 0)


def test_crashed_task_is_replaced(cluster: tuple[Fleet, Kind]) -> None:
    fleet, kind = cluster
    fleet.create("crashy", replicas=2, **kind.spec())
    before = {t["slot"]: t for t in fleet.wait_running("crashy", 2)}
    victim = before[1]
    kind.kill(victim)
    def replaced() -> dict[int, dict[str, Any]] | None:
        by_slot = {t["slot"]: t for t in fleet.running("crashy")}
        return by_slot if len(by_slot) == 2 and by_slot[1]["id"] != victim["id"] else None

    after = eventually(replaced, 20, "slot 1 replaced by a new task")
    assert after[2]["id"] == before[2]["id"], "the other replica must not be touched"
    old = next(t for t in fleet.tasks("crashy") if t["id"] == victim["id"])
    assert old["state"] == "failed", old
    assert "137" in old["message"] or "signal" in old["message"], old
    fleet.cli("service", "rm", "crashy").ok()
    wait_instances(kind, "crashy", 0)


def test_service_rm_leaves_no_container_or_process(cluster: tuple[Fleet, Kind]) -> None:
    fleet, kind = cluster
    fleet.create("gone", replicas=3, **kind.spec())
    fleet.wait_running("gone", 3)
    wait_instances(kind, "gone", 3)
    fleet.cli("service", "rm", "gone").ok()
    wait_instances(kind, "gone", 0)
    if kind.runtime == "docker":
        label = "warren.service.name=gone"
        leftovers = docker_client().api.containers(all=True, filters={"label": label})
        eventually(
            lambda: not docker_client().api.containers(all=True, filters={"label": label}),
            20,
            f"no container (even stopped) of gone; first seen {leftovers[:1]}",
        )


def test_constraints_and_resource_limits(cluster: tuple[Fleet, Kind]) -> None:
    fleet, kind = cluster
    zone_b = fleet.workers[1].name
    fleet.create(
        "limited",
        replicas=3,
        constraints=["node.labels.zone==b"],
        resources={"cpus": 0.5, "memory": 64 * 1024 * 1024},
        **kind.spec(),
    )
    tasks = fleet.wait_running("limited", 3)
    assert {t["node"] for t in tasks} == {zone_b}
    if kind.runtime == "docker":
        for t in tasks:
            host = docker_client().api.inspect_container(t["container_id"])["HostConfig"]
            assert host["Memory"] == 64 * 1024 * 1024, host["Memory"]
            assert host["NanoCpus"] == 500_000_000, host["NanoCpus"]
    fleet.cli("service", "rm", "limited").ok()

    # Nothing fits: the task stays pending and says why.
    fleet.create("too-big", replicas=1, resources={"memory": 2**49}, **kind.spec())
    pending = eventually(
        lambda: [t for t in fleet.tasks("too-big") if t["state"] == "pending" and t["message"]],
        20,
        "a pending task with a reason",
    )
    assert "memory" in pending[0]["message"], pending[0]
    ps = fleet.cli("service", "ps", "too-big").ok()
    assert "pending" in ps.stdout and "memory" in ps.stdout, ps.stdout

    fleet.create("nowhere", replicas=1, constraints=["node.labels.zone==mars"], **kind.spec())
    pending = eventually(
        lambda: [t for t in fleet.tasks("nowhere") if t["state"] == "pending" and t["message"]],
        20,
        "a pending task with a reason",
    )
    assert "zone" in pending[0]["message"], pending[0]
    for name in ("too-big", "nowhere"):
        fleet.cli("service", "rm", name).ok()


def test_bad_specs_are_refused_with_clear_messages(cluster: tuple[Fleet, Kind]) -> None:
    fleet, kind = cluster
    for args in (
        ["--publish", "99999:80"],
        ["--memory", "12q"],
        ["--constraint", "nonsense"],
        ["--health-cmd", "true", "--health-tcp", "80"],
        ["--replicas", "-1"],
    ):
        result = fleet.cli("service", "create", "--detach", "bad", "--image", "x", *args)
        assert result.returncode == 2, result
        assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr, result
    from tests.integration.managers import api, assert_error_body

    with api(fleet.addr) as client:
        for body in (
            {"name": "bad", "image": "x", "driver": "process"},  # a process needs a command
            {"name": "bad", "image": "x", "publish": [{"host": 80, "container": 80}] * 2},
            {"name": "bad", "image": "x", "health": {"kind": "http"}},  # no port
            {"name": "Bad_Name", "image": "x"},
        ):
            assert_error_body(client.post("/v1/services", json=body), 400, "invalid")
    assert fleet.tasks  # the cluster still answers
    assert not [s for s in fleet.managers.managers[0].services() if s["name"] == "bad"]


def test_logs_of_a_service(cluster: tuple[Fleet, Kind]) -> None:
    fleet, kind = cluster
    fleet.create("talker", replicas=1, **kind.spec("sh", "-c", "echo hello-from-task; sleep 100000"))
    fleet.wait_running("talker", 1)
    def logged() -> bool:
        result = fleet.cli("service", "logs", "talker")
        return result.returncode == 0 and "hello-from-task" in result.stdout

    eventually(logged, 20, "the task's output in `service logs`")
    fleet.cli("service", "rm", "talker").ok()
    # `sh` as PID 1 ignores SIGTERM: the stop takes its full timeout; the next test needs it gone.
    wait_instances(kind, "talker", 0)


def test_worker_restart_adopts_its_tasks(cluster: tuple[Fleet, Kind]) -> None:
    fleet, kind = cluster
    fleet.create("adopted", replicas=2, constraints=["node.labels.zone==a"], **kind.spec())
    tasks = {t["id"]: t for t in fleet.wait_running("adopted", 2)}
    instances = wait_instances(kind, "adopted", 2)
    worker = fleet.workers[0]
    assert worker.stop() == 0
    assert kind.instances("adopted") == instances, "stopping the agent must leave its tasks running"
    worker.start()
    worker.wait_ready(fleet.addr)
    again = {t["id"]: t for t in fleet.wait_running("adopted", 2)}
    assert again.keys() == tasks.keys(), "the restarted worker must adopt, not replace, its tasks"
    assert kind.instances("adopted") == instances
    fleet.cli("service", "rm", "adopted").ok()
    wait_instances(kind, "adopted", 0)


def test_drain_moves_tasks_and_activate_allows_them_back(cluster: tuple[Fleet, Kind]) -> None:
    fleet, kind = cluster
    a, b = fleet.workers[0], fleet.workers[1]
    fleet.create("drained", replicas=4, **kind.spec())
    fleet.wait_running("drained", 4)
    fleet.cli("node", "drain", a.name).ok()
    tasks = fleet.wait_running("drained", 4)
    assert {t["node"] for t in tasks} == {b.name}
    node = fleet.cli("node", "inspect", a.name, "-o", "json").ok()
    assert '"drain"' in node.stdout
    fleet.cli("node", "activate", a.name).ok()
    fleet.cli("service", "scale", "--detach", "drained", "6").ok()
    tasks = fleet.wait_running("drained", 6)
    assert a.name in {t["node"] for t in tasks}, "an active node takes new tasks again"
    fleet.cli("service", "rm", "drained").ok()
    wait_instances(kind, "drained", 0)


def test_global_service_follows_nodes_joining_and_leaving(cluster: tuple[Fleet, Kind]) -> None:
    fleet, kind = cluster
    fleet.create("everywhere", mode="global", **kind.spec())
    tasks = fleet.wait_running("everywhere", 2)
    assert {t["node"] for t in tasks} == {w.name for w in fleet.workers}
    extra = fleet.add_worker(kind.runtime, labels=["zone=c"])
    tasks = fleet.wait_running("everywhere", 3)
    assert extra.name in {t["node"] for t in tasks}
    extra.kill()
    extra.kill_tasks()
    fleet.cli("node", "rm", extra.name).ok()
    fleet.workers.remove(extra)
    tasks = fleet.wait_running("everywhere", 2)
    assert extra.name not in {t["node"] for t in tasks}
    fleet.cli("service", "rm", "everywhere").ok()
    if kind.runtime == "docker":  # the removed worker's container stays until that worker comes back
        for c in containers(kind.cluster_id, **{"warren.node": extra.name}):
            docker_client().api.remove_container(c["Id"], force=True)
    wait_instances(kind, "everywhere", 0)


def test_published_port_answers_and_health_check_passes(cluster: tuple[Fleet, Kind]) -> None:
    fleet, kind = cluster
    from warren.testing.process import free_port

    port = free_port("127.0.0.1")
    if kind.runtime == "docker":
        # Host mode: the port answers on the task's node itself (this test is about the task, not ingress).
        publish = [{"host": port, "container": 8080, "mode": "host"}]
        spec = kind.spec("httpd", "-f", "-p", "8080", "-h", "/www", publish=publish)
        spec["health"] = {"kind": "http", "port": 8080, "path": "/", "interval_s": 0.5}
    else:
        spec = kind.spec(sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1")
        spec["publish"] = [{"host": port, "container": port, "mode": "host"}]
        spec["health"] = {"kind": "tcp", "port": port, "interval_s": 0.5}
    fleet.create("web", replicas=1, **spec)
    task = fleet.wait_running("web", 1)[0]
    eventually(lambda: next(t for t in fleet.tasks("web") if t["id"] == task["id"])["health"] == "healthy",
             30, "the web task healthy")
    import httpx

    node = next(w for w in fleet.workers if w.name == task["node"])
    assert node
    response = eventually(lambda: httpx.get(f"http://127.0.0.1:{port}/", timeout=2), 20, "the published port")
    assert response.status_code == 200
    fleet.cli("service", "rm", "web").ok()


@pytest.fixture
def own_fleet(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Fleet]:
    with fleets(tmp_path, request) as make:
        fleet = make()
        fleet.start_managers(1)
        yield fleet


def test_killed_worker_tasks_run_elsewhere_within_15s(own_fleet: Fleet) -> None:
    import time

    fleet = own_fleet
    doomed = fleet.add_worker("process")
    survivor = fleet.add_worker("process")
    fleet.create("moving", replicas=4, image="local", driver="process", command=["sleep", "100000"])
    tasks = fleet.wait_running("moving", 4)
    assert {t["node"] for t in tasks} == {doomed.name, survivor.name}
    t0 = time.monotonic()
    doomed.kill()
    doomed.kill_tasks()  # a machine crash takes its processes with it

    def moved() -> bool:
        running = fleet.running("moving")
        return len(running) == 4 and {t["node"] for t in running} == {survivor.name}

    eventually(moved, 30, "all 4 tasks running on the survivor", detail=fleet.log_tails)
    elapsed = time.monotonic() - t0
    fleet.wait_running("moving", 4)
    assert elapsed < 15, f"tasks took {elapsed:.1f}s to run elsewhere"
    node = fleet.cli("node", "inspect", doomed.name, "-o", "json").ok()
    assert '"down"' in node.stdout
    print(f"worker kill -9 -> all 4 tasks running on the survivor: {elapsed:.2f}s")


@pytest.mark.parametrize("cluster", ["docker"], indirect=True)  # images are a docker-runtime matter
def test_absent_image_fails_the_task_with_the_reason(cluster: tuple[Fleet, Kind]) -> None:
    fleet, kind = cluster
    fleet.create("ghost", replicas=1, image="warren-no-such-image:1.0", command=["sleep", "1"],
                 restart={"condition": "none"})
    failed = eventually(
        lambda: [t for t in fleet.tasks("ghost") if t["state"] == "failed"],
        60,
        "the task of an absent image to fail",
    )
    assert "warren-no-such-image:1.0" in failed[0]["message"], failed[0]
    assert "pull" in failed[0]["message"], failed[0]
    fleet.cli("service", "rm", "ghost").ok()
