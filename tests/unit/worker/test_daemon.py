"""The worker agent end to end in one process: WorkerAgent against a FakeManager (httpx.MockTransport)
and a FakeRuntime, with its real node.json and worker.db in a temporary data dir."""

from __future__ import annotations

import asyncio
import logging
import os
import stat
import time
from pathlib import Path
from typing import Any

import pytest

from tests.unit.fake_manager import (
    CA_PEM,
    CLUSTER,
    NODE,
    SECRET,
    TOKEN,
    CAFetcher,
    FakeManager,
    node_material,
    other_ca_pem,
    task_doc,
    transport,
)
from tests.unit.worker.agents import M1, M2, Worker, make_settings, worker
from tests.unit.worker.fake_runtime import FakeRuntime
from warren.errors import ConfigError, CorruptStateError, UnauthorizedError, UnavailableError
from warren.pki import certs, tokens
from warren.pki.material import load_node, tls_dir
from warren.testing.wait import eventually_async
from warren.worker import identity
from warren.worker.cache import WorkerCache
from warren.worker.daemon import WorkerAgent


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "worker"


# -- joining and resuming ---------------------------------------------------------------------------


async def test_join_writes_a_private_identity_then_resume_needs_no_token(data_dir: Path) -> None:
    m = FakeManager()
    rt = FakeRuntime()
    rt.version_text = "Docker Engine 20.10.24"
    async with worker(make_settings(data_dir, labels=(("zone", "a"),)), rt, {M1: m}) as w:
        await eventually_async(lambda: len(m.sessions) >= 2, 5.0, "session calls")
        assert await w.finish() == 0
    assert w.lines == [
        f"Worker joined cluster {CLUSTER} (Node ID: {NODE})",
        "Runtime: docker (Docker Engine 20.10.24)",
        f"Connected to manager {M1}",
    ]
    [join] = m.joins
    assert join["token"] == TOKEN and join["addr"] == "127.0.0.1" and join["labels"] == {"zone": "a"}
    assert join["resources"]["drivers"] == ["docker"] and join["resources"]["cpus"] > 0
    # The first session call after a start reports address, labels and resources; later ones do not.
    assert m.sessions[0]["addr"] == "127.0.0.1" and m.sessions[0]["labels"] == {"zone": "a"}
    assert "resources" in m.sessions[0] and "addr" not in m.sessions[1]
    # Every call after the join presents the secret.
    assert all(h.get("authorization") == f"Bearer {SECRET}" for h in m.headers_seen[1:])

    me = identity.load(str(data_dir))
    assert me is not None and (me.name, me.secret, me.cluster_id, me.managers) == (
        NODE,
        SECRET,
        CLUSTER,
        (M1,),
    )
    assert stat.S_IMODE(os.stat(identity.path(str(data_dir))).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(data_dir).st_mode) == 0o700
    assert SECRET not in repr(me)
    tls = load_node(str(data_dir))  # the certificate from the join, for the key made here
    assert tls is not None and (tls.identity.name, tls.identity.role, tls.identity.cluster_id) == (
        NODE,
        "worker",
        CLUSTER,
    )
    assert certs.csr_public_key(join["csr"]) == certs.load_key(tls.key_pem).public_key()
    assert stat.S_IMODE(os.stat(tls.node_path).st_mode) == 0o600

    async with worker(make_settings(data_dir), FakeRuntime(), {M1: m}, token=None) as again:
        await eventually_async(lambda: len(m.sessions) >= 4, 5.0, "session calls after the restart")
    assert len(m.joins) == 1
    assert again.lines[0] == f"Worker resumed in cluster {CLUSTER} (Node ID: {NODE})"


async def test_no_identity_and_no_token_is_a_config_error(data_dir: Path) -> None:
    with pytest.raises(ConfigError, match="--token"):
        await WorkerAgent(make_settings(data_dir), runtimes=[FakeRuntime()]).run(asyncio.Event())


async def test_a_refused_token_fails_the_start(data_dir: Path) -> None:
    m = FakeManager()
    wrong = tokens.mint(certs.ca_digest(CA_PEM))  # this cluster's CA, but not a token it issued
    agent = WorkerAgent(
        make_settings(data_dir),
        token=wrong,
        runtimes=[FakeRuntime()],
        transport=transport({M1: m}),
        fetch_ca=CAFetcher({M1: m}),
    )
    with pytest.raises(UnauthorizedError, match="refused the join token: invalid join token") as info:
        await agent.run(asyncio.Event())
    assert wrong not in str(info.value) and "\n" not in str(info.value)
    assert identity.load(str(data_dir)) is None


async def test_a_token_of_another_cluster_aborts_before_sending_anything(data_dir: Path) -> None:
    m = FakeManager()
    m.ca_pem = other_ca_pem()  # a manager of another cluster (or someone in between)
    agent = WorkerAgent(
        make_settings(data_dir),
        token=TOKEN,
        runtimes=[FakeRuntime()],
        transport=transport({M1: m}),
        fetch_ca=CAFetcher({M1: m}),
    )
    with pytest.raises(UnauthorizedError, match="does not match the join token's digest") as info:
        await agent.run(asyncio.Event())
    assert TOKEN not in str(info.value) and "\n" not in str(info.value)
    assert not m.joins and not m.headers_seen  # neither the token nor a CSR was sent
    assert identity.load(str(data_dir)) is None and not os.path.exists(tls_dir(str(data_dir)))


async def test_resuming_without_tls_material_says_to_join_again(data_dir: Path) -> None:
    # A data dir from before TLS (or whose tls/ was removed): node.json but no certificate.
    data_dir.mkdir(mode=0o700)
    identity.save(str(data_dir), identity.WorkerIdentity(NODE, SECRET, CLUSTER))
    m = FakeManager()
    agent = WorkerAgent(make_settings(data_dir), runtimes=[FakeRuntime()], transport=transport({M1: m}))
    with pytest.raises(CorruptStateError, match="no TLS certificate") as info:
        await agent.run(asyncio.Event())
    assert "join this worker again with a new token" in str(info.value) and "\n" not in str(info.value)
    assert not m.headers_seen


async def test_resuming_with_damaged_or_foreign_tls_material_fails_clearly(data_dir: Path) -> None:
    data_dir.mkdir(mode=0o700)
    identity.save(str(data_dir), identity.WorkerIdentity(NODE, SECRET, CLUSTER))
    node_material(str(data_dir), name="worker-other")
    agent = WorkerAgent(make_settings(data_dir), runtimes=[FakeRuntime()], transport=transport({}))
    with pytest.raises(CorruptStateError, match="is that of worker worker-other"):
        await agent.run(asyncio.Event())
    with open(os.path.join(tls_dir(str(data_dir)), "node.pem"), "wb") as f:
        f.write(b"not a certificate")
    with pytest.raises(CorruptStateError, match="is damaged"):
        await agent.run(asyncio.Event())


async def test_resuming_with_an_expired_certificate_says_to_join_again(data_dir: Path) -> None:
    data_dir.mkdir(mode=0o700)
    identity.save(str(data_dir), identity.WorkerIdentity(NODE, SECRET, CLUSTER))
    node_material(str(data_dir), lifetime_s=-10.0)
    agent = WorkerAgent(make_settings(data_dir), runtimes=[FakeRuntime()], transport=transport({}))
    with pytest.raises(UnauthorizedError, match="expired at .* UTC .*join this worker again"):
        await agent.run(asyncio.Event())


async def test_the_certificate_is_renewed_while_the_sessions_go_on(
    data_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    m = FakeManager()
    m.cert_lifetime_s = 3.0  # renewed after about half of it
    async with worker(make_settings(data_dir), FakeRuntime(), {M1: m}):
        await eventually_async(lambda: m.sessions, 5.0, "a session")
        first = load_node(str(data_dir))
        assert first is not None
        await eventually_async(lambda: m.renewals, 10.0, "a renewal")
        sessions = len(m.sessions)
        m.assign(task_doc("t1"))
        await eventually_async(lambda: m.state("t1") == "running", 5.0, "t1 running after the renewal")
        await eventually_async(lambda: len(m.sessions) > sessions + 1, 5.0, "sessions after the renewal")
    renewed = load_node(str(data_dir))
    assert renewed is not None and renewed.cert_pem in m.renewals and renewed.key_pem != first.key_pem
    assert renewed.identity.name == NODE
    assert all(h.get("authorization") == f"Bearer {SECRET}" for h in m.headers_seen[1:])
    assert "certificate renewed, valid until" in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]  # nothing failed or broke off


async def test_join_gives_up_after_join_timeout_when_no_manager_answers(data_dir: Path) -> None:
    agent = WorkerAgent(
        make_settings(data_dir, join_timeout_s=0.2),
        token=TOKEN,
        runtimes=[FakeRuntime()],
        transport=transport({}),
        fetch_ca=CAFetcher({}),
    )
    started = time.monotonic()
    with pytest.raises(UnavailableError, match="could not join within 0.2 s"):
        await agent.run(asyncio.Event())
    assert time.monotonic() - started < 2


async def test_failover_to_the_second_manager_when_the_first_refuses(data_dir: Path) -> None:
    m1, m2 = FakeManager(), FakeManager()
    m1.refuse = True
    rt = FakeRuntime()
    async with worker(make_settings(data_dir, managers=(M1, M2)), rt, {M1: m1, M2: m2}) as w:
        await eventually_async(lambda: len(m2.sessions) >= 1, 5.0, "a session on the second manager")
        m2.assign(task_doc("t1"))
        await eventually_async(
            lambda: m2.state("t1") == "running", 5.0, "t1 running, reported to the second manager"
        )
    assert w.lines[-1] == f"Connected to manager {M2}"
    assert len(m2.joins) == 1 and not m1.sessions


async def test_unavailable_manager_is_skipped_like_a_dead_one(data_dir: Path) -> None:
    m1, m2 = FakeManager(), FakeManager()
    m1.unavailable = True  # 503: no leader
    async with worker(make_settings(data_dir, managers=(M1, M2)), FakeRuntime(), {M1: m1, M2: m2}):
        await eventually_async(lambda: len(m2.sessions) >= 2, 5.0, "sessions on the second manager")


async def test_a_removed_node_exits_1_with_one_clear_line(
    data_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    m = FakeManager()
    async with worker(make_settings(data_dir), FakeRuntime(), {M1: m}) as w:
        await eventually_async(lambda: len(m.sessions) >= 1, 5.0, "a session call")
        m.removed = True
        async with asyncio.timeout(5):
            status = await w.task
    assert status == 1
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(lines) == 1 and f"node {NODE} was removed from the cluster" in lines[0]
    assert SECRET not in caplog.text and TOKEN not in caplog.text


# -- running assignments ---------------------------------------------------------------------------


async def test_assignment_starts_the_container_and_reports_running(data_dir: Path) -> None:
    m = FakeManager()
    rt = FakeRuntime()
    async with worker(make_settings(data_dir), rt, {M1: m}):
        m.assign(task_doc("t1", env={"A": "1"}))
        await eventually_async(lambda: m.state("t1") == "running", 5.0, "t1 running")
    [run] = rt.starts
    [container] = rt.running("t1")
    assert m.update("t1")["container_id"] == container.container_id  # type: ignore[index]
    assert "starting" in m.states("t1") or len(m.status_posts[0]) == 1  # merged if both were queued at once
    assert run.image == "busybox" and run.service_name == "web" and run.slot == 1
    assert run.env == {
        "A": "1",
        "WARREN_TASK_ID": "t1",
        "WARREN_SERVICE": "web",
        "WARREN_SLOT": "1",
        "WARREN_NODE": NODE,
    }
    assert run.cpus == 0.5 and run.memory == 64 * 1024 * 1024 and run.stop_timeout_s == 3.0
    assert [(p.host, p.container, p.protocol) for p in run.publish] == [(8081, 80, "tcp")]


def ingress_doc(task_id: str, **kw: Any) -> dict[str, Any]:
    """A task publishing 8080 (ingress, to 80), 8443 (ingress, to 443) and 8081 (host mode, to 80)."""
    doc = task_doc(task_id, **kw)
    doc["spec"]["publish"] = [
        {"host": 8080, "container": 80, "mode": "ingress"},
        {"host": 8443, "container": 443, "mode": "ingress"},
        {"host": 8081, "container": 80, "mode": "host"},
    ]
    return doc


async def test_the_running_update_reports_the_host_ports_of_the_ingress_publishes(data_dir: Path) -> None:
    m = FakeManager()
    rt = FakeRuntime()
    async with worker(make_settings(data_dir), rt, {M1: m}):
        m.assign(ingress_doc("t1"))
        await eventually_async(lambda: m.state("t1") == "running", 5.0, "t1 running")
        m.assign(task_doc("t2", slot=2))  # host mode only: nothing to report
        await eventually_async(lambda: m.state("t2") == "running", 5.0, "t2 running")
    [run, _] = rt.starts
    assert [(p.host, p.container, p.ingress) for p in run.publish] == [
        (8080, 80, True), (8443, 443, True), (8081, 80, False)
    ]
    # The fake engine's choice: target + 30000.
    assert m.update("t1")["ports"] == {"8080": 30080, "8443": 30443}  # type: ignore[index]
    assert all("ports" not in u for u in m.updates if u["task_id"] == "t2")


async def test_an_adopted_container_reports_its_ports_again(data_dir: Path) -> None:
    m = FakeManager()
    m.assign(ingress_doc("t1", state="running"))
    rt = FakeRuntime()
    cid = rt.add("t1")
    rt.host_ports[(cid, 80)] = 32768
    rt.host_ports[(cid, 443)] = 32769
    async with worker(make_settings(data_dir), rt, {M1: m}):
        await eventually_async(lambda: m.state("t1") == "running", 5.0, "t1 reported running")
    assert m.update("t1")["ports"] == {"8080": 32768, "8443": 32769}  # type: ignore[index]
    assert not rt.starts


async def test_start_error_is_reported_failed_with_the_runtime_reason(data_dir: Path) -> None:
    m = FakeManager()
    rt = FakeRuntime()
    rt.fail_start["nosuch"] = "image nosuch not found and no registry reachable"
    async with worker(make_settings(data_dir), rt, {M1: m}):
        m.assign(task_doc("t1", image="nosuch"))
        await eventually_async(lambda: m.state("t1") == "failed", 5.0, "t1 failed")
        await eventually_async(lambda: len(m.sessions) >= 4, 5.0, "more session rounds")
    assert m.update("t1")["message"] == "image nosuch not found and no registry reachable"  # type: ignore[index]
    assert rt.starts_of("t1") == 1  # no retry: the leader makes a new task


async def test_a_driver_the_worker_lacks_is_rejected(data_dir: Path) -> None:
    m = FakeManager()
    rt = FakeRuntime("process")
    async with worker(make_settings(data_dir), rt, {M1: m}):
        m.assign(task_doc("t1", driver="docker"))
        await eventually_async(lambda: m.state("t1") == "rejected", 5.0, "t1 rejected")
    assert "no docker runtime" in m.update("t1")["message"]  # type: ignore[index]
    assert not rt.starts


async def test_desired_shutdown_stops_and_reports_shutdown(data_dir: Path) -> None:
    m = FakeManager()
    rt = FakeRuntime()
    async with worker(make_settings(data_dir), rt, {M1: m}):
        m.assign(task_doc("t1"))
        await eventually_async(lambda: m.state("t1") == "running", 5.0, "t1 running")
        [c] = rt.running("t1")
        m.set_desired("t1", "shutdown")
        await eventually_async(lambda: m.state("t1") == "shutdown", 5.0, "t1 shutdown")
    assert rt.stops == [c.container_id] and rt.removed == [c.container_id]
    assert "failed" not in m.states("t1")  # the stop's own exit event is not an exit to report


async def test_a_task_missing_from_the_assignments_is_removed_silently(data_dir: Path) -> None:
    m = FakeManager()
    rt = FakeRuntime()
    async with worker(make_settings(data_dir), rt, {M1: m}):
        m.assign(task_doc("t1"), task_doc("t2"))
        await eventually_async(
            lambda: m.state("t1") == "running" and m.state("t2") == "running", 5.0, "both running"
        )
        reports = len(m.updates)
        m.unassign("t1")
        await eventually_async(lambda: not rt.running("t1"), 5.0, "t1's container stopped")
        await eventually_async(lambda: len(rt.removed) == 1, 5.0, "t1's container removed")
        await eventually_async(lambda: len(m.sessions) >= 6, 5.0, "more session rounds")
    assert len(m.updates) == reports
    assert len(rt.running("t2")) == 1
    [stopped] = rt.stops
    assert rt.stop_timeouts[stopped] == 3.0  # its service's grace (task_doc), not the worker's 1.0


async def test_tasks_that_ended_and_left_the_assignments_are_forgotten(data_dir: Path) -> None:
    m = FakeManager()
    rt = FakeRuntime()
    async with worker(make_settings(data_dir), rt, {M1: m}) as w:
        m.assign(task_doc("t1"), task_doc("t2", slot=2))
        await eventually_async(
            lambda: m.state("t1") == "running" and m.state("t2") == "running", 5.0, "both running"
        )
        [c] = rt.running("t1")
        rt.crash(c.container_id, 0)
        await eventually_async(lambda: m.state("t1") == "complete", 5.0, "t1 complete")
        m.unassign("t1")
        worker_loop = w.agent.worker_loop
        assert worker_loop is not None
        # t1's controller (its local view, its stop timeout) is forgotten; t2's is kept.
        await eventually_async(lambda: "t1" not in worker_loop.tasks, 5.0, "t1's controller dropped")
        assert worker_loop.tasks["t2"].stop_timeout_s is not None


async def test_exit_is_reported_at_once_and_not_restarted_while_connected(data_dir: Path) -> None:
    # A long heartbeat: the report must not wait for the next session call.
    m = FakeManager(heartbeat_period_s=30.0)
    rt = FakeRuntime()
    async with worker(make_settings(data_dir), rt, {M1: m}):
        m.assign(task_doc("t1"), task_doc("t2", slot=2))
        await eventually_async(
            lambda: m.state("t1") == "running" and m.state("t2") == "running", 5.0, "both running"
        )
        [c1] = rt.running("t1")
        [c2] = rt.running("t2")
        crashed = time.monotonic()
        rt.crash(c1.container_id, 3)
        await eventually_async(lambda: m.state("t1") == "failed", 1.0, "t1 failed")
        assert time.monotonic() - crashed < 1.0
        rt.crash(c2.container_id, 0)
        await eventually_async(lambda: m.state("t2") == "complete", 1.0, "t2 complete")
        await eventually_async(lambda: len(rt.removed) == 2, 5.0, "both containers removed")
    failed = m.update("t1")
    assert failed is not None
    assert (failed["message"], failed["exit_code"], failed["container_id"]) == (
        "exited with status 3",
        3,
        c1.container_id,
    )
    assert m.update("t2")["exit_code"] == 0  # type: ignore[index]
    assert rt.starts_of("t1") == 1 and rt.starts_of("t2") == 1


async def test_adopts_running_containers_at_start_without_starting_them_again(data_dir: Path) -> None:
    m = FakeManager()
    m.assign(task_doc("t1"), task_doc("t2"))
    rt = FakeRuntime()
    async with worker(make_settings(data_dir), rt, {M1: m}):
        await eventually_async(
            lambda: m.state("t1") == "running" and m.state("t2") == "running", 5.0, "both running"
        )
    m.assign(task_doc("t1", state="running"), task_doc("t2", state="running"))
    # Second run of the worker (same data dir): containers left running are adopted.
    before = list(rt.starts)
    stale = rt.add("gone-task")  # a task the leader no longer has
    async with worker(make_settings(data_dir), rt, {M1: m}, token=None):
        await eventually_async(lambda: stale in rt.removed, 5.0, "the stale container removed")
        await eventually_async(lambda: len(m.sessions) >= 6, 5.0, "more session rounds")
    assert rt.starts == before
    assert len(rt.running("t1")) == 1 and len(rt.running("t2")) == 1


async def test_adoption_without_worker_db_reports_running_with_the_container(data_dir: Path) -> None:
    m = FakeManager()
    m.assign(task_doc("t1", state="running"))
    rt = FakeRuntime()
    cid = rt.add("t1")
    async with worker(make_settings(data_dir), rt, {M1: m}):
        await eventually_async(lambda: m.state("t1") == "running", 5.0, "t1 reported running")
    assert m.update("t1")["container_id"] == cid  # type: ignore[index]
    assert not rt.starts


async def test_a_container_that_exited_while_the_worker_was_down_is_reported(data_dir: Path) -> None:
    m = FakeManager()
    m.assign(task_doc("t1", state="running"))
    rt = FakeRuntime()
    cid = rt.add("t1", running=False, exit_code=2)
    async with worker(make_settings(data_dir), rt, {M1: m}):
        await eventually_async(lambda: m.state("t1") == "failed", 5.0, "t1 failed")
        await eventually_async(lambda: cid in rt.removed, 5.0, "its container removed")
    assert m.update("t1")["exit_code"] == 2  # type: ignore[index]
    assert not rt.starts


# -- autonomy ---------------------------------------------------------------------------------------


async def _running_then_cut_off(w: Worker, m: FakeManager, *docs: dict[str, Any]) -> None:
    m.assign(*docs)
    await eventually_async(
        lambda: all(m.state(d["task_id"]) == "running" for d in docs), 5.0, "tasks running"
    )
    m.go_away()
    # Noticed at once: the held session call breaks off and no other manager answers.
    await eventually_async(
        lambda: w.agent.worker_loop is not None and w.agent.worker_loop.cut_off, 5.0, "the worker cut off"
    )


async def test_cut_off_a_crashed_task_is_restarted_in_place_and_reported_after_reconnect(
    data_dir: Path,
) -> None:
    m = FakeManager()
    rt = FakeRuntime()
    async with worker(make_settings(data_dir), rt, {M1: m}) as w:
        await _running_then_cut_off(w, m, task_doc("t1"))
        [old] = rt.running("t1")
        updates = len(m.updates)
        rt.crash(old.container_id, 1)
        await eventually_async(lambda: rt.starts_of("t1") == 2, 5.0, "t1 restarted in place")
        [new] = rt.running("t1")
        assert new.run is not None and new.run.task_id == "t1"  # same task ID
        assert old.container_id in rt.removed
        assert len(m.updates) == updates  # nobody to tell yet
        m.come_back()
        await eventually_async(lambda: len(m.updates) > updates, 5.0, "queued statuses delivered")
    last = m.update("t1")
    assert last is not None and last["state"] == "running" and last["container_id"] == new.container_id
    assert "restarted in place" in last["message"] and "exited with status 1" in last["message"]
    assert "failed" not in m.states("t1")


def queued(data_dir: Path) -> dict[str, str]:
    """Task -> state of the status updates waiting in worker.db."""
    cache = WorkerCache.open(str(data_dir))
    try:
        return {u.task_id: u.state for _, u in cache.pending()}
    finally:
        cache.close()


async def test_cut_off_restart_policy_on_failure_none_and_max_attempts(data_dir: Path) -> None:
    m = FakeManager()
    rt = FakeRuntime()
    on_failure = {"condition": "on-failure", "delay_s": 0.0, "max_attempts": 2}
    never = {"condition": "none", "delay_s": 0.0, "max_attempts": 0}
    async with worker(make_settings(data_dir), rt, {M1: m}) as w:
        await _running_then_cut_off(
            w,
            m,
            task_doc("ok", restart=on_failure),
            task_doc("once", restart=never, slot=2),
            task_doc("clean", restart=on_failure, slot=3),
        )
        # on-failure: two local restarts, then the third failure is final.
        for attempt in (2, 3):
            [c] = rt.running("ok")
            rt.crash(c.container_id, 1)
            await eventually_async(
                lambda a=attempt: rt.starts_of("ok") == a, 5.0, f"restart {attempt - 1} of 'ok'"
            )
        [c] = rt.running("ok")
        rt.crash(c.container_id, 1)
        # none: never restarted; on-failure after a clean exit: not restarted either.
        [c] = rt.running("once")
        rt.crash(c.container_id, 1)
        [c] = rt.running("clean")
        rt.crash(c.container_id, 0)
        await eventually_async(
            lambda: queued(data_dir) == {"ok": "failed", "once": "failed", "clean": "complete"},
            5.0,
            "final states queued in worker.db",
        )
        assert not rt.running()
        m.come_back()
        await eventually_async(
            lambda: (
                m.state("ok") == "failed" and m.state("once") == "failed" and m.state("clean") == "complete"
            ),
            5.0,
            "final states delivered",
        )
    assert (rt.starts_of("ok"), rt.starts_of("once"), rt.starts_of("clean")) == (3, 1, 1)


async def test_queued_statuses_survive_a_worker_restart(data_dir: Path) -> None:
    m = FakeManager()
    rt = FakeRuntime()
    never = {"condition": "none"}
    async with worker(make_settings(data_dir), rt, {M1: m}) as w:
        await _running_then_cut_off(w, m, task_doc("t1", restart=never))
        [c] = rt.running("t1")
        rt.crash(c.container_id, 7)
        await eventually_async(lambda: c.container_id in rt.removed, 5.0, "the exited container removed")
        assert await w.finish() == 0
    assert m.state("t1") == "running"
    cache = WorkerCache.open(str(data_dir))
    try:
        [(_, queued)] = cache.pending()
    finally:
        cache.close()
    assert (queued.task_id, queued.state, queued.exit_code) == ("t1", "failed", 7)
    m.come_back()
    async with worker(make_settings(data_dir), rt, {M1: m}, token=None):
        await eventually_async(lambda: m.state("t1") == "failed", 5.0, "the queued failure delivered")
    assert m.update("t1")["message"] == "exited with status 7"  # type: ignore[index]
    cache = WorkerCache.open(str(data_dir))
    try:
        assert cache.pending() == []
    finally:
        cache.close()


async def test_restart_delay_ends_when_a_manager_answers_again(data_dir: Path) -> None:
    m = FakeManager()
    rt = FakeRuntime()
    slow = {"condition": "any", "delay_s": 30.0}
    async with worker(make_settings(data_dir), rt, {M1: m}) as w:
        await _running_then_cut_off(w, m, task_doc("t1", restart=slow))
        [c] = rt.running("t1")
        rt.crash(c.container_id, 4)
        await eventually_async(lambda: c.container_id in rt.removed, 5.0, "the exited container removed")
        m.come_back()
        # Back in touch before the restart: the leader decides (reported failed, no local restart).
        await eventually_async(lambda: m.state("t1") == "failed", 5.0, "t1 failed")
    assert rt.starts_of("t1") == 1
    failed = m.update("t1")
    assert failed is not None and (failed["exit_code"], failed["message"]) == (4, "exited with status 4")


# -- logs -------------------------------------------------------------------------------------------


async def test_log_request_is_answered_in_chunks_with_an_end_marker(data_dir: Path) -> None:
    m = FakeManager()
    rt = FakeRuntime()
    async with worker(make_settings(data_dir), rt, {M1: m}):
        m.assign(task_doc("t1"))
        await eventually_async(lambda: m.state("t1") == "running", 5.0, "t1 running")
        [c] = rt.running("t1")
        c.output = b"".join(b"line %06d\n" % i for i in range(15_000))  # 180 KB
        m.request_logs("ab12", "t1", c.container_id)
        await eventually_async(
            lambda: any(end for _, end in m.log_chunks.get("ab12", [])), 5.0, "the last chunk"
        )
        m.request_logs("cd34", "t1", c.container_id, tail=2)
        await eventually_async(
            lambda: any(end for _, end in m.log_chunks.get("cd34", [])), 5.0, "the tail's last chunk"
        )
    chunks = m.log_chunks["ab12"]
    assert all(len(data) <= 64 * 1024 for data, _ in chunks)
    assert [end for _, end in chunks] == [False] * (len(chunks) - 1) + [True]
    assert b"".join(data for data, _ in chunks) == c.output
    assert b"".join(data for data, _ in m.log_chunks["cd34"]) == b"line 014998\nline 014999\n"


async def test_run_without_an_event_and_stop_waits_for_the_end(data_dir: Path) -> None:
    m = FakeManager()
    rt = FakeRuntime()
    agent = WorkerAgent(
        make_settings(data_dir),
        token=TOKEN,
        runtimes=[rt],
        transport=transport({M1: m}),
        fetch_ca=CAFetcher({M1: m}),
    )
    task = asyncio.create_task(agent.run())
    m.assign(task_doc("t1"))
    await eventually_async(lambda: m.state("t1") == "running", 5.0, "t1 running")
    await agent.stop()
    assert task.done() and task.result() == 0
    assert len(rt.running("t1")) == 1  # stopping the agent leaves the tasks running
    assert not rt.closed  # runtimes given by the caller stay open


async def test_resuming_with_other_managers_remembers_them(data_dir: Path) -> None:
    m1, m2 = FakeManager(), FakeManager()
    async with worker(make_settings(data_dir), FakeRuntime(), {M1: m1}):
        await eventually_async(lambda: len(m1.sessions) >= 1, 5.0, "a session with the first manager")
    async with worker(make_settings(data_dir, managers=(M2,)), FakeRuntime(), {M2: m2}, token=None):
        await eventually_async(lambda: len(m2.sessions) >= 1, 5.0, "a session with the new manager")
    me = identity.load(str(data_dir))
    assert me is not None and me.managers == (M2,) and not m2.joins


async def test_log_request_for_a_task_without_a_container_ends_with_a_note(data_dir: Path) -> None:
    m = FakeManager()
    async with worker(make_settings(data_dir), FakeRuntime(), {M1: m}):
        m.request_logs("ef56", "t-gone", "c-gone")
        await eventually_async(lambda: "ef56" in m.log_chunks, 5.0, "the answer")
    [(data, end)] = m.log_chunks["ef56"]
    assert end and b"has no container" in data


async def test_stop_while_joining_ends_the_retries(data_dir: Path) -> None:
    agent = WorkerAgent(
        make_settings(data_dir, join_timeout_s=60.0, retry_max_delay_s=0.2),
        token=TOKEN,
        runtimes=[FakeRuntime()],
        transport=transport({}),
        fetch_ca=CAFetcher({}),
    )
    task = asyncio.create_task(agent.run())
    await eventually_async(lambda: agent._running, 5.0, "the join under way")
    async with asyncio.timeout(2):
        await agent.stop()
    assert task.result() == 0 and identity.load(str(data_dir)) is None
