"""Where every service's tasks are (warren.manager.endpoints) and how the dispatcher sends it: which
tasks are listed and which count as healthy, services with discovery off left out, a digest that
changes with what a worker would answer and only then, held sessions woken only for workers that ask."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from msgspec import UNSET

from tests.unit.manager.test_dispatcher import T0, World, status
from warren.config import OrchestratorSettings
from warren.manager import endpoints as endpoints_mod
from warren.manager.dispatcher import secret_digest
from warren.manager.endpoints import compute, host_of
from warren.pki import tokens
from warren.spec.service import HealthCheck, Publish, ServiceSpec, TaskSpec
from warren.store import commands as c
from warren.testing.wait import eventually_async

CHECKED = TaskSpec(image="busybox", health=HealthCheck(kind="tcp", port=80))
UNCHECKED = TaskSpec(image="busybox")


class Cluster(World):
    """World's store (service `web`, svc-1, no health check on its tasks unless given) with workers
    of their own addresses."""

    def worker_at(self, name: str, addr: str) -> str:
        self.propose.apply(c.RegisterWorker(
            name, tokens.digest(self.token), secret_digest(f"secret-of-{name}"), addr, {}, {}, T0))
        return name

    def service(self, service_id: str, name: str, **spec: Any) -> None:
        self.propose.apply(c.CreateService(service_id, name, ServiceSpec(image="busybox", **spec), T0))

    def running(self, task_id: str, node: str, slot: int, *, service: str = "svc-1",
                spec: TaskSpec = UNCHECKED, health: str | None = None) -> None:
        new = c.NewTask(task_id, service, slot, node, "assigned", "", spec, "d1")
        self.propose.apply(c.CreateTasks([new], T0))
        self.propose.apply(c.SetTaskStatuses([status(task_id, "running", node=node, health=health)]))

    def endpoints(self) -> dict[str, Any]:
        return compute(self.store.conn).services


@pytest.fixture
def cluster(tmp_path: Path) -> Cluster:
    return Cluster(tmp_path)


def test_a_service_without_tasks_is_listed_with_no_address(cluster: Cluster) -> None:
    assert cluster.endpoints() == {"web": {"healthy": [], "tasks": []}}


def test_running_tasks_are_listed_and_the_healthy_addresses_sorted_once_each(cluster: Cluster) -> None:
    b, a = cluster.worker_at("worker-bbbbb1", "10.0.0.3"), cluster.worker_at("worker-aaaaa1", "10.0.0.2:7070")
    cluster.running("t1", b, 1)
    cluster.running("t2", a, 2)
    cluster.running("t3", a, 3)
    web = cluster.endpoints()["web"]
    assert web["healthy"] == ["10.0.0.2", "10.0.0.3"]  # the host part of an address with a port
    assert web["tasks"] == [
        {"task_id": "t1", "slot": 1, "node": b, "addr": "10.0.0.3", "healthy": True},
        {"task_id": "t2", "slot": 2, "node": a, "addr": "10.0.0.2", "healthy": True},
        {"task_id": "t3", "slot": 3, "node": a, "addr": "10.0.0.2", "healthy": True},
    ]


def test_with_a_health_check_only_a_healthy_task_counts(cluster: Cluster) -> None:
    nodes = [cluster.worker_at(f"worker-aaaaa{i}", f"10.0.0.{i}") for i in (1, 2, 3)]
    for i, health in enumerate(("healthy", "unhealthy", "starting")):
        cluster.running(f"t{i}", nodes[i], i, spec=CHECKED, health=health)
    web = cluster.endpoints()["web"]
    assert web["healthy"] == ["10.0.0.1"]
    assert [(t["task_id"], t["healthy"]) for t in web["tasks"]] == [
        ("t0", True), ("t1", False), ("t2", False)]
    # The same health reported for a task whose spec has no check: healthy, whatever it says.
    cluster.running("t9", nodes[1], 9, spec=UNCHECKED, health="none")
    assert cluster.endpoints()["web"]["healthy"] == ["10.0.0.1", "10.0.0.2"]


def test_tasks_not_running_or_being_stopped_are_left_out(cluster: Cluster) -> None:
    w1 = cluster.worker_at("worker-aaaaa1", "10.0.0.1")
    assigned = c.NewTask("t0", "svc-1", 1, w1, "assigned", "", UNCHECKED, "d1")
    cluster.propose.apply(c.CreateTasks([assigned], T0))
    cluster.running("t1", w1, 2)
    cluster.running("t2", w1, 3)
    cluster.propose.apply(c.SetTaskStatuses([status("t2", "failed", node=w1)]))
    assert [t["task_id"] for t in cluster.endpoints()["web"]["tasks"]] == ["t1"]  # t0 assigned, t2 failed
    cluster.propose.apply(c.SetTasksDesired(["t1"], "shutdown", "scale down", T0))  # still running
    assert cluster.endpoints()["web"] == {"healthy": [], "tasks": []}


def test_a_task_on_a_node_written_down_is_listed_but_not_healthy(cluster: Cluster) -> None:
    w1, w2 = cluster.worker_at("worker-aaaaa1", "10.0.0.1"), cluster.worker_at("worker-aaaaa2", "10.0.0.2")
    cluster.running("t1", w1, 1)
    cluster.running("t2", w2, 2)
    cluster.propose.apply(c.SetNodeState(w2, "down", T0))
    web = cluster.endpoints()["web"]
    assert web["healthy"] == ["10.0.0.1"]
    assert [(t["task_id"], t["healthy"]) for t in web["tasks"]] == [("t1", True), ("t2", False)]


def test_a_node_without_an_address_gives_no_endpoint(cluster: Cluster) -> None:
    w1 = cluster.worker_at("worker-aaaaa1", "10.0.0.1")
    cluster.running("t1", w1, 1)
    cluster.store.conn.execute("UPDATE nodes SET api_addr = NULL WHERE name = ?", (w1,))
    assert cluster.endpoints()["web"] == {"healthy": [], "tasks": []}
    assert host_of(None) is None and host_of("") is None and host_of("bad host:1") is None
    assert host_of("[fd00::2]:7070") == "fd00::2" and host_of("node-1.lan") == "node-1.lan"


def test_a_service_with_discovery_off_is_left_out(cluster: Cluster) -> None:
    w1 = cluster.worker_at("worker-aaaaa1", "10.0.0.1")
    cluster.service("svc-2", "batch", discovery=False)
    cluster.service("svc-3", "api", discovery=True)
    cluster.running("t1", w1, 1, service="svc-2")
    assert sorted(cluster.endpoints()) == ["api", "web"]
    cluster.propose.apply(c.UpdateService("web", {"discovery": False}, T0))
    assert sorted(cluster.endpoints()) == ["api"]
    cluster.propose.apply(c.UpdateService("batch", {"discovery": True}, T0))
    assert cluster.endpoints()["batch"]["healthy"] == ["10.0.0.1"]


def test_a_spec_is_read_again_only_when_its_service_changed(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: dict[str, endpoints_mod.ServiceView] = {}
    cluster.service("svc-2", "api")
    decoded: list[str] = []
    real = endpoints_mod.queries.stored_spec

    def counting(text: Any) -> Any:
        decoded.append(text)
        return real(text)

    monkeypatch.setattr(endpoints_mod.queries, "stored_spec", counting)
    assert sorted(compute(cluster.store.conn, seen).services) == ["api", "web"] and len(decoded) == 2
    assert sorted(compute(cluster.store.conn, seen).services) == ["api", "web"] and len(decoded) == 2
    cluster.propose.apply(c.UpdateService("api", {"discovery": False}, T0))
    decoded.clear()  # the store's apply reads specs too
    assert sorted(compute(cluster.store.conn, seen).services) == ["web"] and len(decoded) == 1
    cluster.propose.apply(c.RemoveService("web", T0))
    assert compute(cluster.store.conn, seen).services == {} and list(seen) == ["svc-2"]


def test_the_digest_changes_with_the_endpoints_and_only_with_them(cluster: Cluster) -> None:
    w1, w2 = cluster.worker_at("worker-aaaaa1", "10.0.0.1"), cluster.worker_at("worker-aaaaa2", "10.0.0.2")
    cluster.running("t1", w1, 1, spec=CHECKED, health="starting")
    first = compute(cluster.store.conn)
    assert compute(cluster.store.conn) == first and len(first.digest) == 16
    # The ingress section is always there (empty: no service publishes an ingress port).
    assert first.to_doc() == {"digest": first.digest, "services": first.services, "ingress": {}}
    # What a worker does not answer from: node labels, another service's spec, a task not yet running.
    cluster.propose.apply(c.UpdateNode(w2, "10.0.0.2", {"zone": "b"}, {}, T0))
    cluster.propose.apply(c.UpdateService("web", {"replicas": 3}, T0))
    cluster.propose.apply(c.CreateTasks([c.NewTask("t2", "svc-1", 2, w2, "assigned", "", CHECKED, "d1")], T0))
    assert compute(cluster.store.conn).digest == first.digest
    cluster.propose.apply(c.SetTaskStatuses([status("t1", "running", node=w1, health="healthy")]))
    healthy = compute(cluster.store.conn)
    assert healthy.digest != first.digest and healthy.services["web"]["healthy"] == ["10.0.0.1"]
    cluster.propose.apply(c.SetTaskStatuses([status("t1", "running", node=w1, health="unhealthy")]))
    assert compute(cluster.store.conn).digest == first.digest  # the same endpoints as at first
    cluster.service("svc-2", "api")
    assert compute(cluster.store.conn).digest != first.digest  # a new name


# -- the ingress section --------------------------------------------------------------------------------

WEB_8080 = [Publish(host=8080, container=80, mode="ingress")]


def ingress(cluster: Cluster) -> dict[str, Any]:
    return compute(cluster.store.conn).ingress


def test_an_ingress_port_lists_the_ready_replicas_at_their_reported_host_ports(cluster: Cluster) -> None:
    w1, w2 = cluster.worker_at("worker-bbbbb2", "10.0.0.2"), cluster.worker_at("worker-aaaaa1", "10.0.0.1")
    cluster.service("svc-2", "shop", publish=WEB_8080, discovery=False)
    assert ingress(cluster) == {"8080": {"service": "shop", "backends": []}}  # listened on before any replica
    for task_id, node, slot, port in (("t9", w1, 1, 32768), ("t1", w1, 2, 32769), ("t5", w2, 3, 40000)):
        cluster.running(task_id, node, slot, service="svc-2")
        reported = status(task_id, "running", node=node, ports={"8080": port})
        cluster.propose.apply(c.SetTaskStatuses([reported]))
    # Sorted by node, then task ID; discovery off leaves the service out of `services` only.
    assert ingress(cluster) == {"8080": {"service": "shop", "backends": [
        {"addr": "10.0.0.1", "port": 40000, "task_id": "t5", "node": w2},
        {"addr": "10.0.0.2", "port": 32769, "task_id": "t1", "node": w1},
        {"addr": "10.0.0.2", "port": 32768, "task_id": "t9", "node": w1},
    ]}}
    assert "shop" not in cluster.endpoints()


def test_only_healthy_running_replicas_that_reported_the_port_are_backends(cluster: Cluster) -> None:
    w1, w2 = cluster.worker_at("worker-aaaaa1", "10.0.0.1"), cluster.worker_at("worker-aaaaa2", "10.0.0.2")
    host = Publish(host=9000, container=90, mode="host")
    tls = Publish(host=8443, container=443, mode="ingress")
    cluster.service("svc-2", "shop", publish=[*WEB_8080, host, tls])
    checked = TaskSpec(image="busybox", health=HealthCheck(kind="tcp", port=80))
    cluster.running("t-ok", w1, 1, service="svc-2")
    cluster.running("t-sick", w1, 2, service="svc-2", spec=checked, health="unhealthy")
    cluster.running("t-mute", w1, 3, service="svc-2")  # reported no port
    cluster.running("t-down", w2, 4, service="svc-2")
    cluster.running("t-stop", w1, 5, service="svc-2")
    for task_id, node in (("t-ok", w1), ("t-sick", w1), ("t-down", w2), ("t-stop", w1)):
        cluster.propose.apply(c.SetTaskStatuses([status(task_id, "running", node=node,
                                                        ports={"8080": 30000, "9000": 30001})]))
    cluster.propose.apply(c.SetTasksDesired(["t-stop"], "shutdown", "scale down", T0))
    cluster.propose.apply(c.SetNodeState(w2, "down", T0))
    table = ingress(cluster)
    assert sorted(table) == ["8080", "8443"], "a host-mode port is no ingress port"
    assert [b["task_id"] for b in table["8080"]["backends"]] == ["t-ok"]
    assert table["8443"]["backends"] == [], "no replica reported a host port for 8443"
    # A later report without ports (a health report) keeps them; an empty one clears them.
    cluster.propose.apply(c.SetTaskStatuses([status("t-sick", "running", node=w1, health="healthy")]))
    assert [b["task_id"] for b in ingress(cluster)["8080"]["backends"]] == ["t-ok", "t-sick"]
    cluster.propose.apply(c.SetTaskStatuses([status("t-sick", "running", node=w1, ports={})]))
    assert [b["task_id"] for b in ingress(cluster)["8080"]["backends"]] == ["t-ok"]
    assert cluster.store.conn.execute("SELECT ports FROM tasks WHERE id = 't-sick'").fetchone()[0] is None


def test_a_node_known_by_a_host_name_gives_no_backend(cluster: Cluster) -> None:
    named = cluster.worker_at("worker-aaaaa1", "node-1.example.com")
    cluster.service("svc-2", "shop", publish=WEB_8080)
    cluster.running("t1", named, 1, service="svc-2")
    cluster.propose.apply(c.SetTaskStatuses([status("t1", "running", node=named, ports={"8080": 30000})]))
    assert ingress(cluster) == {"8080": {"service": "shop", "backends": []}}
    assert cluster.endpoints()["shop"]["tasks"][0]["addr"] == "node-1.example.com"  # names still answer


def test_the_ingress_table_follows_the_current_spec_and_the_digest_covers_it(cluster: Cluster) -> None:
    w1 = cluster.worker_at("worker-aaaaa1", "10.0.0.1")
    seen: dict[str, endpoints_mod.ServiceView] = {}
    cluster.service("svc-2", "shop", publish=WEB_8080, discovery=False)
    cluster.running("t1", w1, 1, service="svc-2")
    empty = compute(cluster.store.conn, seen)
    cluster.propose.apply(c.SetTaskStatuses([status("t1", "running", node=w1, ports={"8080": 30000})]))
    routed = compute(cluster.store.conn, seen)
    assert routed.services == empty.services and routed.digest != empty.digest, "the digest covers ingress"
    assert routed.to_doc()["ingress"] == routed.ingress and routed.ingress["8080"]["backends"]
    cluster.propose.apply(c.SetTaskStatuses([status("t1", "running", node=w1, ports={"8080": 30001})]))
    moved = compute(cluster.store.conn, seen)
    assert moved.digest != routed.digest and moved.ingress["8080"]["backends"][0]["port"] == 30001
    # The published port changes: the old task reported none for the new one.
    cluster.propose.apply(c.UpdateService("shop", {"publish": [{"host": 9090, "container": 80,
                                                                "mode": "ingress"}]}, T0))
    assert compute(cluster.store.conn, seen).ingress == {"9090": {"service": "shop", "backends": []}}
    cluster.propose.apply(c.RemoveService("shop", T0))
    assert compute(cluster.store.conn, seen).ingress == {}


def test_a_port_two_stored_services_publish_goes_to_one_of_them_alike_everywhere(cluster: Cluster) -> None:
    cluster.service("svc-3", "zeta", publish=WEB_8080)
    cluster.service("svc-2", "alpha")
    # The state machine refuses a second service on an ingress port; a store written before the rule
    # (or damaged) may still hold one.
    zeta = cluster.store.conn.execute("SELECT spec FROM services WHERE id = 'svc-3'").fetchone()[0]
    cluster.store.conn.execute(
        "UPDATE services SET spec = ?, version = version + 1 WHERE id = 'svc-2'", (zeta,))
    assert ingress(cluster) == {"8080": {"service": "alpha", "backends": []}}


def test_a_damaged_ports_column_is_read_as_no_ports(cluster: Cluster) -> None:
    w1 = cluster.worker_at("worker-aaaaa1", "10.0.0.1")
    cluster.service("svc-2", "shop", publish=WEB_8080)
    cluster.running("t1", w1, 1, service="svc-2")
    for text in ("not json", "[1]", '{"8080": "x"}', '{"8080": 70000}', '{"8080": true}'):
        cluster.store.conn.execute("UPDATE tasks SET ports = ? WHERE id = 't1'", (text,))
        assert ingress(cluster)["8080"]["backends"] == [], text


# -- the dispatcher ------------------------------------------------------------------------------------


async def test_a_worker_that_asks_gets_the_endpoints_then_none_while_current(cluster: Cluster) -> None:
    w1 = cluster.worker_at("worker-aaaaa1", "10.0.0.1")
    cluster.running("t1", w1, 1)
    d = cluster.dispatcher(hold_s=0.05)
    d.start()
    first = await d.session(w1, None, None, None)  # it has none: sent at once
    expected = compute(cluster.store.conn)
    assert first["endpoints"] == expected.to_doc()
    again = await d.session(w1, first["digest"], None, expected.digest)
    assert again["endpoints"] is None
    old = await d.session(w1, first["digest"], None)  # an older worker: never sent them
    assert old["endpoints"] is None
    await d.stop()


async def test_a_held_session_wakes_on_an_endpoint_change_only_if_its_worker_asked(cluster: Cluster) -> None:
    w1, w2 = cluster.worker_at("worker-aaaaa1", "10.0.0.1"), cluster.worker_at("worker-aaaaa2", "10.0.0.2")
    cluster.running("t1", w1, 1, spec=CHECKED, health="starting")
    settings = OrchestratorSettings(heartbeat_period_s=10.0, node_down_grace_s=20.0)
    d = cluster.dispatcher(settings, hold_s=1.5)
    d.start()
    known = {n: (await d.session(n, None, None, None))["digest"] for n in (w1, w2)}
    start = time.monotonic()
    asking = asyncio.create_task(d.session(w2, known[w2], None, d.endpoints().digest))
    older = asyncio.create_task(d.session(w2, known[w2], None))
    await eventually_async(lambda: d.held == 2, 1.0, "both sessions held")
    # A task of w1 turns healthy: nothing changes in w2's assignments, only the endpoints.
    cluster.propose.apply(c.SetTaskStatuses([status("t1", "running", node=w1, health="healthy")]))
    answer = await asking
    assert time.monotonic() - start < 1.0, "answered on the change, not at the end of the hold"
    assert answer["assignments"] is None
    assert answer["endpoints"]["services"]["web"]["healthy"] == ["10.0.0.1"]
    assert answer["endpoints"]["digest"] == compute(cluster.store.conn).digest
    assert not older.done()  # an older worker is not woken for what it never asked for
    late = await older
    assert time.monotonic() - start >= 1.4 and late["endpoints"] is None
    await d.stop()


async def test_the_endpoints_are_computed_once_per_applied_index(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    w1, w2 = cluster.worker_at("worker-aaaaa1", "10.0.0.1"), cluster.worker_at("worker-aaaaa2", "10.0.0.2")
    calls: list[int] = []
    real = endpoints_mod.compute

    def counting(conn: Any, seen: Any) -> endpoints_mod.Endpoints:
        calls.append(1)
        return real(conn, seen)

    monkeypatch.setattr(endpoints_mod, "compute", counting)
    d = cluster.dispatcher(hold_s=0.01)
    d.start()
    for node in (w1, w2, w1):
        await d.session(node, None, None, None)
    assert len(calls) == 1
    cluster.running("t1", w1, 1)
    await d.session(w2, None, None, UNSET)  # not asked: not computed
    assert len(calls) == 1
    await d.session(w2, None, None, "0" * 16)
    assert len(calls) == 2
    await d.stop()


async def test_an_endpoints_change_alone_is_answered_at_most_once_per_interval(cluster: Cluster) -> None:
    # A large create changes the endpoints at every commit; each answer carries the whole table.
    w1, w2 = cluster.worker_at("worker-aaaaa1", "10.0.0.1"), cluster.worker_at("worker-aaaaa2", "10.0.0.2")
    settings = OrchestratorSettings(heartbeat_period_s=10.0, node_down_grace_s=20.0, endpoints_interval_s=0.5)
    d = cluster.dispatcher(settings, hold_s=5.0)
    d.start()
    first = await d.session(w2, None, None, None)  # it has none: sent at once, and due again in 0.5 s
    sent = time.monotonic()
    held = asyncio.create_task(d.session(w2, first["digest"], None, first["endpoints"]["digest"]))
    await eventually_async(lambda: d.held == 1, 1.0, "the session held")
    cluster.running("t1", w1, 1)  # only the endpoints change for w2
    answer = await held
    assert time.monotonic() - sent >= 0.45, "not before the interval since the last table sent"
    assert time.monotonic() - sent < 2.0, "but at its end, not at the end of the hold"
    assert [t["task_id"] for t in answer["endpoints"]["services"]["web"]["tasks"]] == ["t1"]
    # Its own assignments are answered at once, the interval notwithstanding.
    held = asyncio.create_task(d.session(w2, answer["digest"], None, answer["endpoints"]["digest"]))
    await eventually_async(lambda: d.held == 1, 1.0, "the session held")
    start = time.monotonic()
    cluster.running("t2", w2, 2)
    answer = await held
    assert time.monotonic() - start < 0.3
    assert [a["task_id"] for a in answer["assignments"]] == ["t2"]
    await d.stop()


def test_a_service_past_the_bound_lists_the_first_task_of_every_address_then_the_rest_in_order(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A worker refuses a table with more tasks per service than the bound (and, before the leader cut
    # it, was answered again at once at every call): the leader lists at most that many.
    monkeypatch.setattr(endpoints_mod, "MAX_SERVICE_TASKS", 4)
    a, b = cluster.worker_at("worker-aaaaa1", "10.0.0.1"), cluster.worker_at("worker-bbbbb1", "10.0.0.2")
    for slot in range(1, 6):
        cluster.running(f"t{slot}", a, slot)
    cluster.running("t6", b, 6)  # the only task at its address, last in order
    web = cluster.endpoints()["web"]
    assert [t["task_id"] for t in web["tasks"]] == ["t1", "t2", "t3", "t6"]
    assert web["healthy"] == ["10.0.0.1", "10.0.0.2"]
