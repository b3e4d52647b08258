"""The leader's reconcile loop, with a scripted planner (no Raft, no real planner): what wakes a pass,
that passes never overlap, error backoff. The leader-services watcher is in test_leadership.py."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from warren.config import OrchestratorSettings
from warren.errors import ConflictError, UnavailableError
from warren.manager import orchestrator as orch_mod
from warren.manager.inflight import InFlight
from warren.manager.orchestrator import Orchestrator
from warren.reconciler.actions import Plan
from warren.store import commands as c
from warren.store.machine import Store
from warren.testing.wait import eventually_async

SETTINGS = OrchestratorSettings(full_pass_interval_s=30.0)


@dataclass
class ScriptedPlanner:
    """Returns the queued plans in turn (then empty plans), recording when it was called."""

    plans: list[Plan] = field(default_factory=list)
    calls: list[float] = field(default_factory=list)

    def __call__(self, conn: Any, now: float, settings: OrchestratorSettings) -> Plan:
        self.calls.append(time.monotonic())
        return self.plans.pop(0) if self.plans else Plan([], None)


class SlowProposer:
    """Commits after `delay_s` and tells the store's listeners, like the apply of a real commit."""

    def __init__(self, store: Store, delay_s: float = 0.02, refuse: bool = False) -> None:
        self.store = store
        self.delay_s = delay_s
        self.refuse = refuse
        self.in_flight = 0
        self.max_in_flight_passes: list[int] = []
        self.proposed: list[c.Command] = []

    async def __call__(self, cmd: c.Command) -> Any:
        self.proposed.append(cmd)
        self.in_flight += 1
        try:
            await asyncio.sleep(self.delay_s)  # a commit's latency, simulated
        finally:
            self.in_flight -= 1
        for listener in list(self.store.on_change):
            listener()
        if self.refuse:
            raise ConflictError("refused")
        return {}


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(str(tmp_path))
    s.restore(None)
    return s


def cmd(i: int) -> c.Command:
    return c.RemoveTasks([f"t{i}"])


async def test_a_change_wakes_a_pass_and_commands_are_proposed_together(store: Store) -> None:
    planner = ScriptedPlanner([Plan([cmd(1), cmd(2), cmd(3)], None)])
    proposer = SlowProposer(store, delay_s=0.05)
    o = Orchestrator(store, proposer, SETTINGS, plan=planner)
    o.start()
    # the first pass, then one after its own commits
    await eventually_async(lambda: len(planner.calls) >= 2, 3.0, "a second pass")
    assert len(proposer.proposed) == 3
    # Proposed at once (they commit in one batch), not one after another.
    assert planner.calls[1] - planner.calls[0] < 0.05 * 3
    settled = len(planner.calls)
    await asyncio.sleep(0.1)  # the behaviour under test: no pass in this quiet while
    assert len(planner.calls) == settled, "passes without any change"
    for listener in list(store.on_change):
        listener()
    await eventually_async(lambda: len(planner.calls) == settled + 1, 3.0, "one more pass")
    await o.stop()
    assert o._wake.set not in store.on_change


async def test_passes_never_overlap(store: Store) -> None:
    planner = ScriptedPlanner([Plan([cmd(i)], None) for i in range(5)])
    proposer = SlowProposer(store, delay_s=0.03)
    overlaps: list[int] = []
    real = planner.__call__

    def watching(conn: Any, now: float, settings: OrchestratorSettings) -> Plan:
        overlaps.append(proposer.in_flight)
        return real(conn, now, settings)

    o = Orchestrator(store, proposer, SETTINGS, plan=watching)
    o.start()
    for _ in range(20):  # a storm of changes while passes run
        for listener in list(store.on_change):
            listener()
        await asyncio.sleep(0.005)  # the storm's pace: changes keep arriving while passes run
    await eventually_async(lambda: len(proposer.proposed) == 5, 3.0, "five proposals")
    await o.stop()
    assert set(overlaps) == {0}, "planned while an earlier pass's commands were in flight"


async def test_wake_at_and_the_full_pass_interval_wake_a_pass(store: Store) -> None:
    planner = ScriptedPlanner([Plan([], time.time() + 0.2)])
    o = Orchestrator(store, SlowProposer(store), OrchestratorSettings(full_pass_interval_s=0.5), plan=planner)
    o.start()
    await eventually_async(lambda: len(planner.calls) >= 3, 3.0, "a third pass")
    assert 0.15 <= planner.calls[1] - planner.calls[0] < 0.4, "not woken at wake_at"
    assert 0.4 <= planner.calls[2] - planner.calls[1] < 0.9, "not woken by the full pass interval"
    await o.stop()


async def test_refused_commands_wait_for_a_change_instead_of_replanning_in_a_loop(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(orch_mod, "ERROR_BACKOFF_S", 0.1)

    planner = ScriptedPlanner([Plan([cmd(i)], None) for i in range(100)])
    o = Orchestrator(store, SlowProposer(store, delay_s=0.001, refuse=True), SETTINGS, plan=planner)
    o.start()
    await asyncio.sleep(0.5)  # the behaviour under test: no replanning in this while
    assert len(planner.calls) == 1, "replanned on its own refusal's commit"
    for listener in list(store.on_change):
        listener()
    await eventually_async(lambda: len(planner.calls) == 2, 3.0, "a second pass")
    await o.stop()


async def test_commands_not_committed_are_retried_with_a_growing_backoff(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(orch_mod, "ERROR_BACKOFF_S", 0.05)

    planner = ScriptedPlanner([Plan([cmd(i)], None) for i in range(100)])

    async def no_quorum(command: c.Command) -> Any:
        raise UnavailableError("no quorum")

    o = Orchestrator(store, no_quorum, SETTINGS, plan=planner)
    o.start()
    await eventually_async(lambda: len(planner.calls) >= 4, 3.0, "a fourth pass")
    await o.stop()
    gaps = [b - a for a, b in zip(planner.calls, planner.calls[1:], strict=False)]
    assert gaps[0] >= 0.04 and gaps[2] >= 0.18, gaps  # 0.05, 0.1, 0.2


async def test_a_planner_crash_is_logged_and_retried(store: Store, caplog: pytest.LogCaptureFixture) -> None:
    calls = 0

    def broken(conn: Any, now: float, settings: OrchestratorSettings) -> Plan:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("planner bug SWMTKN-1-" + "a" * 50)
        return Plan([], None)

    o = Orchestrator(store, SlowProposer(store), OrchestratorSettings(full_pass_interval_s=0.1), plan=broken)
    o.start()
    await eventually_async(lambda: calls >= 2, 3.0, "a second call")
    await o.stop()

    assert "planner bug" in caplog.text and "a" * 50 not in caplog.text.replace("SWMTKN-1-<redacted>", "")


# -- pacing ------------------------------------------------------------------------------------------


@dataclass
class BusyPlanner:
    """Plans for `busy_s` (blocking the event loop, as real planning does) and returns the queued
    plans in turn; records when each call started and ended."""

    busy_s: float
    plans: list[Plan] = field(default_factory=list)
    spans: list[tuple[float, float]] = field(default_factory=list)

    def __call__(self, conn: Any, now: float, settings: OrchestratorSettings) -> Plan:
        start = time.monotonic()
        time.sleep(self.busy_s)  # the planner's CPU time: nothing else runs meanwhile
        self.spans.append((start, time.monotonic()))
        return self.plans.pop(0) if self.plans else Plan([], None)


@pytest.mark.parametrize("pacing", [0.0, 1.0, 2.0])
async def test_a_pass_woken_by_a_change_waits_pacing_times_the_last_planning_time(
    store: Store, pacing: float
) -> None:
    planner = BusyPlanner(0.1, [Plan([cmd(1)], None)])
    proposer = SlowProposer(store, delay_s=0.01)  # its commit is the change that wakes pass 2
    settings = OrchestratorSettings(full_pass_interval_s=30.0, pass_pacing=pacing)
    o = Orchestrator(store, proposer, settings, plan=planner)
    o.start()
    await eventually_async(lambda: len(planner.spans) >= 2, 3.0, "a second pass")
    await o.stop()
    (_, planned), (second, _) = planner.spans[:2]
    gap = second - planned  # the first pass ended (its commit) 0.01 s after it planned
    assert 0.1 * pacing <= gap < 0.1 * pacing + 0.08, gap


async def test_pacing_does_not_hold_back_a_pass_due_at_wake_at(store: Store) -> None:
    planner = BusyPlanner(0.3)
    planner.plans.append(Plan([], time.time() + 0.3 + 0.05))  # due 0.05 s after planning ends
    o = Orchestrator(store, SlowProposer(store), SETTINGS, plan=planner)
    o.start()
    await eventually_async(lambda: len(planner.spans) >= 1, 3.0, "a pass")
    for listener in list(store.on_change):  # a change right after the pass: paced until +0.3 s
        listener()
    await eventually_async(lambda: len(planner.spans) >= 2, 3.0, "a second pass")
    await o.stop()
    (_, planned), (second, _) = planner.spans[:2]
    assert second - planned < 0.2, "a pass due at wake_at waited for the pacing"


async def test_a_pass_woken_by_a_change_lets_the_answers_in_flight_go_first(store: Store) -> None:
    """The apply that wakes a pass belongs to writes still waiting for their answers (they come back
    from the Raft core a moment later): the pass plans only once they have them."""
    inflight = InFlight()
    answered = asyncio.Event()
    planner = ScriptedPlanner()
    settings = OrchestratorSettings(full_pass_interval_s=30.0, answers_first_max_s=1.0)  # 5 ms by default
    o = Orchestrator(store, SlowProposer(store), settings, plan=planner, answers_settled=inflight.settled)
    o.start()
    await eventually_async(lambda: len(planner.calls) >= 1, 3.0, "the first pass")

    async def write() -> float:
        with inflight.track():
            for listener in list(store.on_change):  # its apply, which wakes the reconcile loop
                listener()
            await answered.wait()  # its answer, still on its way back
            return time.monotonic()

    writer = asyncio.create_task(write())
    await asyncio.sleep(0.05)
    assert len(planner.calls) == 1, "planned while a write waited for its answer"
    answered.set()
    answered_at = await writer
    await eventually_async(lambda: len(planner.calls) == 2, 3.0, "the pass after the answer")
    assert planner.calls[1] >= answered_at
    await o.stop()


async def test_answers_first_waits_at_most_its_bound(store: Store) -> None:
    inflight = InFlight()
    never = asyncio.Event()
    planner = ScriptedPlanner()
    settings = OrchestratorSettings(full_pass_interval_s=30.0, answers_first_max_s=0.1)
    o = Orchestrator(store, SlowProposer(store), settings, plan=planner, answers_settled=inflight.settled)
    o.start()
    await eventually_async(lambda: len(planner.calls) >= 1, 3.0, "the first pass")

    async def stuck() -> None:
        with inflight.track():
            await never.wait()

    writer = asyncio.create_task(stuck())
    await asyncio.sleep(0)
    woken = time.monotonic()
    for listener in list(store.on_change):
        listener()
    await eventually_async(lambda: len(planner.calls) == 2, 3.0, "a pass despite a write never answered")
    assert 0.08 <= planner.calls[1] - woken < 1.0
    writer.cancel()
    await o.stop()
