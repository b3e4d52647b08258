"""The leader's dispatcher against a real SQLite store fed through an in-memory proposer (no Raft):
status batching, liveness with a fake clock, fresh grace per leader, held sessions waking on change
and on log requests, the secret check, and the log relay."""

from __future__ import annotations

import asyncio
import hashlib
import time
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from tests.unit.manager.proposer import Proposer
from warren.config import ManagerSettings, OrchestratorSettings
from warren.errors import ConflictError, UnauthorizedError, UnavailableError
from warren.manager import dispatcher as dispatcher_mod
from warren.manager.ca import Issued
from warren.manager.control.membership import Membership
from warren.manager.dispatcher import Dispatcher, NodeReport, check_secret, secret_digest
from warren.manager.logrelay import LogGoneError, LogRelay, LogStream
from warren.pki import offload, tokens
from warren.spec.service import ServiceSpec, TaskSpec
from warren.store import commands as c
from warren.store import queries
from warren.store.machine import Store
from warren.testing.wait import eventually_async

T0 = 1_800_000_000.0
SETTINGS = OrchestratorSettings(heartbeat_period_s=0.5, node_down_grace_s=2.0)
FOUNDER = c.ManagerRecord("manager-1-aaaaaa", 1, "127.0.0.1:8080", "127.0.0.1:7946")


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class World:
    def __init__(self, tmp: Path) -> None:
        self.store = Store(str(tmp))
        self.store.restore(None)
        self.propose = Proposer(self.store)
        self.clock = Clock()
        self.token = tokens.mint("0" * 50)  # a CA digest: this store has no CA
        self.propose.apply(c.InitCluster("cluster-t", T0, FOUNDER))
        self.propose.apply(c.CreateToken("tok", "worker", tokens.digest(self.token), T0, T0 + 1e6, False))
        self.propose.apply(
            c.CreateService("svc-1", "web", ServiceSpec(image="busybox", replicas=2, driver="docker"), T0)
        )
        self.secrets: dict[str, str] = {}
        self.proposed_before = 0

    def worker(self, name: str) -> str:
        secret = f"secret-of-{name}"
        self.secrets[name] = secret
        self.propose.apply(
            c.RegisterWorker(name, tokens.digest(self.token), secret_digest(secret), "127.0.0.9", {}, {}, T0)
        )
        return name

    def task(self, task_id: str, node: str, slot: int = 1) -> None:
        new = c.NewTask(task_id, "svc-1", slot, node, "assigned", "", TaskSpec(image="busybox"), "d1")
        self.propose.apply(c.CreateTasks([new], T0))

    def dispatcher(self, settings: OrchestratorSettings = SETTINGS, **kwargs: Any) -> Dispatcher:
        self.proposed_before = len(self.propose.proposed)
        return Dispatcher(self.store, self.propose, settings, clock=self.clock, **kwargs)

    def digest(self, node: str) -> str:
        return queries.assignments_digest(queries.assignments(self.store.conn, node))

    def state(self, node: str) -> str:
        doc = queries.node(self.store.conn, node)
        assert doc is not None
        return str(doc["state"])


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path)


def status(task_id: str, state: str, at: float = T0, **kw: Any) -> c.TaskStatus:
    return c.TaskStatus(task_id=task_id, state=state, message=state, at=at, **kw)


async def in_flight(
    world: World, d: Dispatcher, node: str, update: c.TaskStatus
) -> tuple[asyncio.Event, asyncio.Task[None]]:
    """Hold proposals at a gate and report `update`: its batch is proposed, not committed, until the
    gate (returned with the report) is set."""
    gate = world.propose.gate = asyncio.Event()
    report = asyncio.create_task(d.report_status(node, [update]))
    await eventually_async(lambda: world.propose.in_flight, 1.0, "the batch proposed and held at the gate")
    return gate, report


def queued(d: Dispatcher) -> int:
    """Status updates merged into the next batch, which is not proposed yet."""
    return 0 if d._batch is None else len(d._batch.updates)


# -- task status -------------------------------------------------------------------------------------


async def test_status_updates_merge_into_one_proposal_while_one_is_in_flight(world: World) -> None:
    w1, w2 = world.worker("worker-aaaaa1"), world.worker("worker-aaaaa2")
    world.task("t1", w1)
    world.task("t2", w2, slot=2)

    d = world.dispatcher()
    d.start()
    gate, first = await in_flight(world, d, w1, status("t1", "starting"))
    assert len(world.propose.of(c.SetTaskStatuses)) == 1  # in flight, held by the gate
    # While it is in flight, three more reports from two workers pile up: one next batch.
    later = [
        asyncio.create_task(d.report_status(w1, [status("t1", "running", container_id="c1")])),
        asyncio.create_task(d.report_status(w2, [status("t2", "starting")])),
        asyncio.create_task(d.report_status(w2, [status("t2", "running")])),
    ]
    await eventually_async(lambda: queued(d) == 2, 1.0, "the reports merged into the next batch")
    assert not first.done() and not any(t.done() for t in later), "answered before the commit"
    assert len(world.propose.of(c.SetTaskStatuses)) == 1
    gate.set()
    await asyncio.gather(first, *later)
    batches = world.propose.of(c.SetTaskStatuses)
    assert len(batches) == 2, batches
    assert world.propose.max_in_flight == 1
    second = {(u.node, u.task_id): u.state for u in batches[1].updates}
    assert second == {(w1, "t1"): "running", (w2, "t2"): "running"}
    tasks = {t["id"]: t for t in queries.tasks(world.store.conn)}
    assert tasks["t1"]["state"] == "running" and tasks["t1"]["container_id"] == "c1"
    assert tasks["t2"]["state"] == "running"
    await d.stop()


async def test_a_later_report_of_an_earlier_state_does_not_replace_a_later_state(world: World) -> None:
    w1 = world.worker("worker-aaaaa1")
    world.task("t1", w1)

    d = world.dispatcher()
    d.start()
    gate, blocker = await in_flight(world, d, w1, status("t1", "starting"))
    merged = [
        asyncio.create_task(d.report_status(w1, [status("t1", "failed", exit_code=3)])),
        asyncio.create_task(d.report_status(w1, [status("t1", "running")])),
    ]
    await eventually_async(lambda: queued(d) == 1, 1.0, "the reports merged into the next batch")
    gate.set()
    await asyncio.gather(blocker, *merged)
    (update,) = world.propose.of(c.SetTaskStatuses)[1].updates
    assert update.state == "failed" and update.exit_code == 3
    task = queries.task(world.store.conn, "t1")
    assert task is not None and task["state"] == "failed"
    await d.stop()


async def test_a_health_report_merged_after_the_running_one_keeps_its_ports(world: World) -> None:
    w1 = world.worker("worker-aaaaa1")
    world.task("t1", w1)
    world.task("t2", w1, slot=2)
    d = world.dispatcher()
    d.start()
    gate, blocker = await in_flight(world, d, w1, status("t2", "starting"))
    merged = [
        asyncio.create_task(d.report_status(w1, [status("t1", "running", container_id="c1",
                                                        ports={"8080": 32768})])),
        asyncio.create_task(d.report_status(w1, [status("t1", "running", container_id="c1",
                                                        health="healthy")])),
    ]
    await eventually_async(lambda: queued(d) == 1, 1.0, "the reports merged into the next batch")
    gate.set()
    await asyncio.gather(blocker, *merged)
    (update,) = world.propose.of(c.SetTaskStatuses)[1].updates
    assert (update.health, update.ports) == ("healthy", {"8080": 32768})
    stored = world.store.conn.execute("SELECT ports FROM tasks WHERE id = 't1'").fetchone()[0]
    assert stored == '{"8080":32768}'
    await d.stop()


async def test_statuses_refused_for_their_ports_by_an_older_peer_commit_without_them(world: World) -> None:
    w1 = world.worker("worker-aaaaa1")
    world.task("t1", w1)
    d = world.dispatcher()
    d.start()
    real = world.propose.__call__

    async def gated(cmd: c.Command) -> Any:  # as VersionGate does with a manager of version 3
        if c.required_version(cmd) > 3:
            raise ConflictError("manager m2 runs an older Warren: upgrade every manager first")
        return await real(cmd)

    d.propose = gated
    await d.report_status(w1, [status("t1", "running", container_id="c1", ports={"8080": 32768})])
    task = queries.task(world.store.conn, "t1")
    assert task is not None and task["state"] == "running"
    assert world.store.conn.execute("SELECT ports FROM tasks WHERE id = 't1'").fetchone()[0] is None
    await d.stop()


async def test_a_failed_batch_fails_its_callers_and_the_next_batch_still_runs(world: World) -> None:
    w1 = world.worker("worker-aaaaa1")
    world.task("t1", w1)

    d = world.dispatcher()
    d.start()
    real = world.propose.__call__
    calls = 0

    async def flaky(cmd: c.Command) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise UnavailableError("no quorum")
        return await real(cmd)

    d.propose = flaky
    with pytest.raises(UnavailableError):
        await d.report_status(w1, [status("t1", "starting")])
    await d.report_status(w1, [status("t1", "starting")])  # the worker resends: harmless
    task = queries.task(world.store.conn, "t1")
    assert task is not None and task["state"] == "starting"
    await d.stop()


async def test_stop_fails_waiting_status_callers_with_unavailable(world: World) -> None:
    w1 = world.worker("worker-aaaaa1")
    world.task("t1", w1)

    d = world.dispatcher()
    d.start()
    _, first = await in_flight(world, d, w1, status("t1", "starting"))
    waiting = asyncio.create_task(d.report_status(w1, [status("t1", "running")]))
    await eventually_async(lambda: queued(d) == 1, 1.0, "the report merged into the next batch")
    await d.stop()
    for t in (first, waiting):
        with pytest.raises(UnavailableError):
            await t
    with pytest.raises(UnavailableError):
        await d.report_status(w1, [status("t1", "running")])


# -- liveness ----------------------------------------------------------------------------------------


async def settle(d: Dispatcher) -> None:
    """Let the background node-state writes started by check_liveness finish."""
    await eventually_async(lambda: not d._node_writes, 1.0, "the node-state writes to finish")


async def test_a_silent_worker_is_written_down_after_the_grace_and_back_up_when_it_calls(
    world: World,
) -> None:
    w1, w2 = world.worker("worker-aaaaa1"), world.worker("worker-aaaaa2")

    d = world.dispatcher()  # liveness is driven by hand: check_liveness with the fake clock
    d.touch(w1)
    d.touch(w2)
    world.clock.now += 1.5
    d.touch(w2)
    await d.check_liveness()
    await settle(d)
    assert world.state(w1) == "ready"
    world.clock.now += 0.6  # w1 silent for 2.1 s > grace 2 s; w2 for 0.6 s
    await d.check_liveness()
    await settle(d)
    assert world.state(w1) == "down" and world.state(w2) == "ready"
    downs = world.propose.of(c.SetNodeState)
    assert [(s.name, s.state) for s in downs] == [(w1, "down")]
    await d.check_liveness()  # a down node is not written down again
    await settle(d)
    assert len(world.propose.of(c.SetNodeState)) == 1
    # It calls again: ready, and its new address and labels are recorded.
    answer = await d.session(w1, None, NodeReport("127.0.0.42", {"zone": "b"}, None))
    assert answer["assignments"] == []
    node = queries.node(world.store.conn, w1)
    assert node is not None and node["state"] == "ready"
    assert node["addr"] == "127.0.0.42" and node["labels"] == {"zone": "b"}
    # The same report again changes nothing.
    before = len(world.propose.proposed)
    await d.session(w1, answer["digest"], NodeReport("127.0.0.42", {"zone": "b"}, None))
    assert len(world.propose.proposed) == before


async def test_a_worker_reporting_its_labels_leaves_an_operators_labels_alone(world: World) -> None:
    w1 = world.worker("worker-aaaaa1")
    world.propose.apply(c.SetNodeLabels(w1, {"zone": "eu"}, [], T0))
    d = world.dispatcher()
    await d.session(w1, None, NodeReport("127.0.0.42", None, None))  # labels not reported: none written
    await settle(d)
    updates = world.propose.of(c.UpdateNode)
    assert all(u.labels == {} for u in updates), updates  # not the operator's zone=eu copied in
    answer = await d.session(w1, None, NodeReport("127.0.0.42", {"zone": "b", "rack": "r1"}, None))
    node = queries.node(world.store.conn, w1)
    assert node is not None and node["labels"] == {"zone": "eu", "rack": "r1"}
    assert node["reported_labels"] == {"zone": "b", "rack": "r1"}
    before = len(world.propose.proposed)
    await d.session(w1, answer["digest"], NodeReport("127.0.0.42", {"zone": "b", "rack": "r1"}, None))
    assert len(world.propose.proposed) == before  # the same report: nothing to write


async def test_a_new_leader_gives_every_worker_a_fresh_grace(world: World) -> None:
    w1 = world.worker("worker-aaaaa1")

    old = world.dispatcher()
    old.touch(w1)
    world.clock.now += 100.0  # the old leader died long ago; w1 was last heard before that
    new = world.dispatcher()
    new.start()
    await new.check_liveness()
    await settle(new)
    world.clock.now += SETTINGS.node_down_grace_s - 0.1
    await new.check_liveness()
    await settle(new)
    assert world.state(w1) == "ready", "written down before its fresh grace ran out"
    world.clock.now += 0.2
    await new.check_liveness()
    await settle(new)
    assert world.state(w1) == "down"
    await new.stop()


async def test_a_node_written_down_ends_its_log_streams(world: World) -> None:
    w1 = world.worker("worker-aaaaa1")

    d = world.dispatcher()
    stream = LogStream(prefixed=False, pickup_timeout_s=60)
    d.logs.open(stream, node=w1, task_id="t1", container_id="c1", follow=True, tail=None, label="web.1")
    world.clock.now += 10
    await d.check_liveness()
    await settle(d)
    out = b"".join([chunk async for chunk in stream.chunks()])
    assert b"went down" in out


# -- sessions ----------------------------------------------------------------------------------------


async def test_a_held_session_answers_at_once_when_its_assignments_change(world: World) -> None:
    w1 = world.worker("worker-aaaaa1")
    settings = OrchestratorSettings(heartbeat_period_s=10.0, node_down_grace_s=20.0)

    d = world.dispatcher(settings)
    d.start()
    first = await d.session(w1, None, None)  # nothing known yet: answered at once
    assert first["assignments"] == [] and first["heartbeat_period_s"] == 10.0
    start = time.monotonic()
    held = asyncio.create_task(d.session(w1, first["digest"], None))
    await eventually_async(lambda: d.held == 1, 1.0, "the session held")
    assert not held.done()
    world.task("t1", w1)  # commits through the store: on_change wakes the held call
    answer = await held
    assert time.monotonic() - start < 2.0
    assert [a["task_id"] for a in answer["assignments"]] == ["t1"]
    assert answer["digest"] == world.digest(w1) != first["digest"]
    assert d.held == 0
    await d.stop()


async def test_the_digest_table_agrees_with_the_assignments_query(world: World) -> None:
    w1, w2, w3 = world.worker("worker-aaaaa1"), world.worker("worker-aaaaa2"), world.worker("worker-aaaaa3")
    world.task("t1", w1)
    world.task("t2", w1, slot=2)
    world.task("t3", w2, slot=3)

    d = world.dispatcher()
    d.start()
    for node in (w1, w2, w3):
        assert d.digest(node) == world.digest(node)
    before = d.digest(w1)
    world.propose.apply(c.SetTaskStatuses([status("t2", "failed", node=w1)]))  # final: not assigned
    assert d.digest(w1) == world.digest(w1) != before
    world.propose.apply(c.SetTasksDesired(["t3"], "shutdown", "scale down", T0))
    assert d.digest(w2) == world.digest(w2)
    await d.stop()


async def test_a_change_for_another_node_does_not_answer_a_held_session(world: World) -> None:
    w1, w2 = world.worker("worker-aaaaa1"), world.worker("worker-aaaaa2")

    d = world.dispatcher(hold_s=0.3)
    d.start()
    known = world.digest(w1)
    start = time.monotonic()
    held = asyncio.create_task(d.session(w1, known, None))
    await eventually_async(lambda: d.held == 1, 1.0, "the session held")
    world.task("t2", w2)
    answer = await held
    assert time.monotonic() - start >= 0.25, "answered before the hold time"
    assert answer["assignments"] is None and answer["digest"] == known
    await d.stop()


async def test_a_log_request_wakes_the_held_session_of_its_node(world: World) -> None:
    w1 = world.worker("worker-aaaaa1")
    settings = OrchestratorSettings(heartbeat_period_s=10.0, node_down_grace_s=20.0)

    d = world.dispatcher(settings)
    d.start()
    held = asyncio.create_task(d.session(w1, world.digest(w1), None))
    await eventually_async(lambda: d.held == 1, 1.0, "the session held")
    stream = LogStream(prefixed=False, pickup_timeout_s=5)
    req = d.logs.open(stream, node=w1, task_id="t1", container_id="c1", follow=False, tail=5, label="w")
    d.wake()
    answer = await asyncio.wait_for(held, 2)
    assert answer["log_requests"] == [
        {"id": req.id, "task_id": "t1", "container_id": "c1", "follow": False, "tail": 5}
    ]
    assert answer["assignments"] is None
    again = await d.session(w1, None, None)
    assert again["log_requests"] == [], "a log request is handed over once"
    await d.stop()


async def test_stop_answers_held_sessions_with_unavailable(world: World) -> None:
    w1 = world.worker("worker-aaaaa1")

    d = world.dispatcher(hold_s=30)
    d.start()
    held = asyncio.create_task(d.session(w1, world.digest(w1), None))
    await eventually_async(lambda: d.held == 1, 1.0, "the session held")
    await d.stop()
    with pytest.raises(UnavailableError):
        await asyncio.wait_for(held, 2)


# -- the secret -----------------------------------------------------------------------------------------


def test_the_session_secret_is_checked_in_constant_time_on_its_digest(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    w1 = world.worker("worker-aaaaa1")
    seen: list[tuple[str, str]] = []
    real = dispatcher_mod.hmac.compare_digest

    def spy(a: str, b: str) -> bool:
        seen.append((a, b))
        return real(a, b)

    monkeypatch.setattr(dispatcher_mod.hmac, "compare_digest", spy)
    check_secret(world.store, w1, world.secrets[w1])
    assert seen[-1] == (hashlib.sha256(world.secrets[w1].encode()).hexdigest(),) * 2
    for node, secret in ((w1, "wrong"), (w1, ""), (w1, None), ("worker-nobody", "x"), (FOUNDER.name, "x")):
        before = len(seen)
        with pytest.raises(UnauthorizedError) as info:
            check_secret(world.store, node, secret)
        assert len(seen) == before + 1, f"no constant-time comparison for {node}/{secret!r}"
        assert world.secrets[w1] not in str(info.value)
    # The other worker's secret does not open this one's session.
    w2 = world.worker("worker-aaaaa2")
    with pytest.raises(UnauthorizedError):
        check_secret(world.store, w1, world.secrets[w2])


def test_a_removed_node_has_no_session(world: World) -> None:
    w1 = world.worker("worker-aaaaa1")
    world.propose.apply(c.RemoveNode(w1, T0))
    with pytest.raises(UnauthorizedError):
        check_secret(world.store, w1, world.secrets[w1])


# -- log relay ---------------------------------------------------------------------------------------


async def test_log_chunks_of_several_tasks_are_prefixed_line_by_line() -> None:
    relay = LogRelay()
    stream = LogStream(prefixed=True, pickup_timeout_s=5)
    a = relay.open(
        stream, node="n1", task_id="a", container_id="ca", follow=False, tail=None, label="web.1"
    )
    b = relay.open(
        stream, node="n2", task_id="b", container_id="cb", follow=False, tail=None, label="web.2"
    )
    relay.take_pending("n1")
    relay.take_pending("n2")
    reader = asyncio.create_task(_read(stream))
    await relay.deliver(a.id, b"one\ntw", False)
    await relay.deliver(b.id, b"x\n", True)
    await relay.deliver(a.id, b"o\nthree", True)
    out = (await reader).decode()
    assert out.splitlines() == ["web.1 | one", "web.2 | x", "web.1 | two", "web.1 | three"]
    with pytest.raises(LogGoneError):
        await relay.deliver(a.id, b"late", False)


async def test_a_client_going_away_refuses_further_chunks() -> None:
    relay = LogRelay()
    stream = LogStream(prefixed=False, pickup_timeout_s=5)
    req = relay.open(stream, node="n1", task_id="a", container_id="ca", follow=True, tail=None, label="x")
    await relay.deliver(req.id, b"hello\n", False)
    relay.close_stream(stream)
    with pytest.raises(LogGoneError):
        await relay.deliver(req.id, b"more\n", False)
    assert relay.get(req.id) is None


async def test_a_request_no_worker_picks_up_ends_after_the_pickup_timeout() -> None:
    relay = LogRelay()
    stream = LogStream(prefixed=False, pickup_timeout_s=0.1)
    relay.open(stream, node="n1", task_id="a", container_id="ca", follow=True, tail=None, label="web.1")
    out = await asyncio.wait_for(_read(stream), 2)
    assert b"did not pick up" in out


async def _read(stream: LogStream) -> bytes:
    return b"".join([chunk async for chunk in stream.chunks()])


async def test_pending_status_updates_per_worker_are_bounded(world: World) -> None:
    """A worker flooding the leader with updates of distinct tasks while a batch is in flight gets 503
    past status_pending_per_node_max; updates of tasks already pending merge and are accepted."""
    w1, w2 = world.worker("worker-aaaaa1"), world.worker("worker-aaaaa2")
    world.task("t1", w1)
    settings = replace(SETTINGS, status_pending_per_node_max=10, status_batch_max=4)

    d = world.dispatcher(settings)
    d.start()
    gate = world.propose.gate = asyncio.Event()
    first = asyncio.create_task(d.report_status(w1, [status("t1", "starting")]))
    # `first` is proposed and held at the gate: the next ones wait
    await eventually_async(lambda: world.propose.in_flight, 1.0, "the first batch held at the gate")
    waiting = [asyncio.create_task(d.report_status(w1, [status(f"x{i}", "running") for i in range(10)]))]
    await eventually_async(lambda: queued(d) == 10, 1.0, "ten updates merged into the next batch")
    with pytest.raises(UnavailableError, match="at most 10"):
        await d.report_status(w1, [status("x-one-more", "running")])
    # the same tasks again merge (no new pending entries); another worker has its own bound
    waiting.append(asyncio.create_task(d.report_status(w1, [status("x3", "complete")])))
    others = [status(f"y{i}", "running") for i in range(10)]
    waiting.append(asyncio.create_task(d.report_status(w2, others)))
    await eventually_async(lambda: queued(d) == 20, 1.0, "the other worker's ten merged too")
    assert not any(t.done() for t in waiting)
    gate.set()
    await asyncio.gather(first, *waiting)
    sizes = [len(b.updates) for b in world.propose.of(c.SetTaskStatuses)]
    assert sizes[0] == 1 and max(sizes) <= 4 and sum(sizes) == 21, sizes
    await d.report_status(w1, [status("x-one-more", "running")])  # the flush made room
    await d.stop()


async def test_a_worker_joining_a_leader_older_than_the_grace_is_not_written_down(world: World) -> None:
    """A liveness pass that falls between the join's commit and the end of the join (the certificate
    is signed after the commit) must find the new worker heard from: it was written down as it joined
    whenever the leader had led for longer than the grace (seen by the issue 19 partition test)."""
    d = world.dispatcher()
    world.clock.now += 10 * SETTINGS.node_down_grace_s  # this leader started long ago

    async def propose(cmd: c.Command) -> Any:
        result = await world.propose(cmd)
        await d.check_liveness()  # the pass lands right after the commit
        await settle(d)
        return result

    async def issue(csr: str, *, name: str, role: str, lifetime_s: float) -> Issued:
        return Issued(b"cert", b"ca", T0 + lifetime_s)

    consensus = SimpleNamespace(require_leader=lambda: None, store=world.store, propose=propose)
    membership = Membership(
        ManagerSettings(), consensus, SimpleNamespace(issue=issue), b"k" * 32,  # type: ignore[arg-type]
        SimpleNamespace(maybe=lambda: d),  # type: ignore[arg-type]
    )
    key = await offload.new_join_key()
    answer = await membership.register_worker(world.token, "127.0.0.9", {}, {}, key.csr_pem)
    assert world.state(answer["name"]) == "ready"
    assert not world.propose.of(c.SetNodeState)
