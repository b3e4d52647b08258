"""The leader's Planner (warren.reconciler.planner.Planner) plans exactly what a full `plan` plans on the
same state at the same time, whatever changed in between, and a pass with nothing changed since an
empty one does not read the state."""

from __future__ import annotations

import itertools
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.unit.reconciler.sim import Sim
from warren.config import OrchestratorSettings
from warren.reconciler import Plan, planner, state
from warren.reconciler.planner import Planner, plan


def ids() -> Callable[[], str]:
    counter = itertools.count(1)
    return lambda: f"t-{next(counter):010x}"


def both(sim: Sim, the_planner: Planner) -> Plan:
    """The Planner's plan, checked against a full pass on the same state at the same time."""
    full = plan(sim.store.conn, sim.now, sim.settings, ids())
    mine = the_planner(sim.store.conn, sim.now, sim.settings, ids())
    assert mine == full
    return full


def settled(sim: Sim) -> None:
    for name in ("w1", "w2", "w3"):
        sim.add_node(name)
    sim.create_service("web", image="v1", replicas=4, restart={"delay_s": 5})
    sim.create_service("agent", image="g1", mode="global")
    sim.settle()


def test_nothing_changed_does_not_read_the_state(sim: Sim, monkeypatch: pytest.MonkeyPatch) -> None:
    settled(sim)
    the_planner = Planner()
    assert both(sim, the_planner).commands == []

    def no_load(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the state was read although nothing changed")

    monkeypatch.setattr(planner, "load", no_load)
    for _ in range(3):
        sim.advance(30.0)
        assert the_planner(sim.store.conn, sim.now, sim.settings) == Plan([], None)


def test_any_change_replans(sim: Sim) -> None:
    settled(sim)
    the_planner = Planner()
    assert both(sim, the_planner).commands == []
    sim.crash(sim.running("web")[0]["id"])
    sim.advance(10.0)  # past the restart delay
    assert both(sim, the_planner).commands  # the replacement


def test_a_due_wake_at_replans(sim: Sim) -> None:
    settled(sim)
    the_planner = Planner()
    sim.crash(sim.running("web")[0]["id"])
    waiting = both(sim, the_planner)
    assert waiting.commands == [] and waiting.wake_at == sim.now + 5
    sim.advance(2.0)
    assert both(sim, the_planner) == waiting  # not due yet: the remembered plan
    sim.now = waiting.wake_at
    assert both(sim, the_planner).commands  # due: the replacement


def test_a_clock_gone_back_or_other_settings_replan(sim: Sim, monkeypatch: pytest.MonkeyPatch) -> None:
    settled(sim)
    the_planner = Planner()
    both(sim, the_planner)
    calls: list[int] = []
    real = state.load

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(planner, "load", counted)
    sim.advance(-1.0)
    both(sim, the_planner)
    assert len(calls) == 2  # the full pass of `both`, and the Planner's own
    sim.settings = OrchestratorSettings(task_history_per_slot=1)
    both(sim, the_planner)
    assert len(calls) == 4


def test_a_restored_state_replans(sim: Sim) -> None:
    settled(sim)
    the_planner = Planner()
    both(sim, the_planner)
    sim.store.restore(None)  # a new connection (an installed snapshot): nothing is known of it
    assert both(sim, the_planner) == Plan([], None)


# -- random changes ---------------------------------------------------------------------------------

NODES = ("w1", "w2", "w3")
SERVICES = ("web", "api")

step = st.one_of(
    st.tuples(st.just("advance"), st.sampled_from((0.0, 0.5, 3.0, 6.0, 40.0))),
    st.tuples(st.just("step"), st.none()),
    st.tuples(st.just("work"), st.none()),
    st.tuples(st.just("crash"), st.integers(0, 20)),
    st.tuples(st.just("down"), st.sampled_from(NODES)),
    st.tuples(st.just("up"), st.sampled_from(NODES)),
    st.tuples(st.just("drain"), st.sampled_from(NODES)),
    st.tuples(st.just("activate"), st.sampled_from(NODES)),
    st.tuples(st.just("scale"), st.tuples(st.sampled_from(SERVICES), st.integers(0, 5))),
    st.tuples(st.just("image"), st.tuples(st.sampled_from(SERVICES), st.integers(1, 3))),
)


def act(sim: Sim, what: str, arg: Any) -> None:
    if what == "advance":
        sim.advance(arg)
    elif what == "step":
        sim.step()
    elif what == "work":
        sim.work()
    elif what == "crash":
        running = [t for s in SERVICES for t in sim.running(s)]
        if running:
            sim.crash(running[arg % len(running)]["id"])
    elif what == "down":
        sim.node_down(arg)
    elif what == "up":
        sim.node_up(arg)
    elif what == "drain":
        sim.drain(arg)
    elif what == "activate":
        sim.activate(arg)
    elif what == "scale":
        sim.update_service(arg[0], replicas=arg[1])
    elif what == "image":
        sim.update_service(arg[0], image=f"{arg[0]}-v{arg[1]}")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(step, min_size=1, max_size=30))
def test_random_changes_plan_as_a_full_pass(steps: list[tuple[str, Any]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        sim = Sim(Path(tmp))
        try:
            for name in NODES:
                sim.add_node(name)
            sim.create_service("web", image="web-v1", replicas=3, restart={"delay_s": 5})
            sim.create_service(
                "api", image="api-v1", replicas=2, update={"monitor_s": 4, "delay_s": 2, "parallelism": 1}
            )
            the_planner = Planner()
            for what, arg in steps:
                act(sim, what, arg)
                both(sim, the_planner)
                sim.advance(1.0)  # the same state a little later: the remembered pass, if any
                both(sim, the_planner)
        finally:
            sim.store.close()
