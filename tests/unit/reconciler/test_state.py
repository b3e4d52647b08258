"""The reconciler's ServiceCache: a load through it gives the same State as a load without it, at every
intermediate state of scenarios that change services in every way (spec updates, scales, update
status reports that keep the version, rollbacks, removals), and it only parses what changed."""

from __future__ import annotations

import pytest

from tests.unit.reconciler.sim import Sim
from warren.reconciler.state import Service, ServiceCache, State, load
from warren.store import commands as c


def watch(sim: Sim, cache: ServiceCache) -> list[int]:
    """Compare cached and uncached loads after every applied batch; the list counts the checks."""
    checks: list[int] = []

    def check() -> None:
        fresh = load(sim.store.conn)
        cached = load(sim.store.conn, cache)
        assert cached == fresh
        assert len(cache) == len(fresh.services), "the cache keeps a service that is gone"
        checks.append(1)

    sim.observers.append(check)
    return checks


def by_name(state: State, name: str) -> Service:
    return next(s for s in state.services if s.name == name)


def test_same_state_through_updates_rollback_and_removal(sim: Sim) -> None:
    cache = ServiceCache()
    checks = watch(sim, cache)
    for name in ("w1", "w2"):
        sim.add_node(name)
    sim.create_service("web", image="v1", replicas=3, update={"failure_action": "rollback", "parallelism": 2})
    sim.create_service("api", image="a1", replicas=2, publish=[{"container": 80, "host": 8080}])
    sim.create_service("agent", image="g1", mode="global", resources={"cpus": 0.5})
    sim.settle()
    sim.update_service("api", replicas=4)  # a scale: same task spec, new version
    sim.update_service("agent", image="g2")  # a rolling update: update_status reports, same version
    sim.run_until(lambda: sim.update_state("agent") == "completed")
    sim.failing_images.add("bad")
    sim.update_service("web", image="bad")  # fails, and is rolled back by the planner
    sim.run_until(lambda: sim.update_state("web") == "rollback_completed")
    assert sim.service("web")["spec"]["image"] == "v1"
    sim.apply(c.RemoveService("api", sim.now))
    sim.settle()
    assert len(cache) == 2
    assert len(checks) > 20


def test_update_status_written_without_a_version_change_is_seen(sim: Sim) -> None:
    cache = ServiceCache()
    sim.create_service("web", image="v1", replicas=0)
    before = load(sim.store.conn, cache)
    version = sim.service("web")["version"]
    sim.apply(c.SetUpdateStatus("web", {"state": "paused", "message": "x"}, sim.now))
    assert sim.service("web")["version"] == version, "the premise: a status report keeps the version"
    after = load(sim.store.conn, cache)
    assert after == load(sim.store.conn)
    assert by_name(after, "web").update_status == {"state": "paused", "message": "x"}
    assert by_name(before, "web").update_status is None
    sim.apply(c.SetUpdateStatus("web", None, sim.now))
    assert by_name(load(sim.store.conn, cache), "web").update_status is None


def test_unchanged_services_are_not_parsed_again(sim: Sim) -> None:
    cache = ServiceCache()
    sim.create_service("a", image="v1", replicas=0)
    sim.create_service("b", image="v1", replicas=0)
    first = load(sim.store.conn, cache)
    sim.update_service("b", image="v2")
    second = load(sim.store.conn, cache)
    a1, a2 = by_name(first, "a"), by_name(second, "a")
    b1, b2 = by_name(first, "b"), by_name(second, "b")
    assert a2.spec is a1.spec
    assert b2.spec is not b1.spec and b2.spec.image == "v2"
    assert b2.previous_spec is not None and b2.previous_spec.image == "v1"
    assert b2.digest != b1.digest
    # Each pass gets its own Service records (the planner appends the tasks it creates to them).
    assert a2 is not a1 and a2.tasks is not a1.tasks


def test_a_stored_spec_that_is_not_valid_leaves_its_service_alone(
    sim: Sim, caplog: pytest.LogCaptureFixture
) -> None:
    # As a Warren from before the image grammar check may have stored it.
    sim.add_node("w1")
    sim.create_service("old", image="v1", replicas=2)
    spec = '{"image": "Upper/Case", "replicas": 2}'
    sim.store.conn.execute("UPDATE services SET spec = ? WHERE name = 'old'", (spec,))
    sim.create_service("web", image="v1", replicas=1)
    cache = ServiceCache()
    with caplog.at_level("ERROR", logger="warren.reconciler.state"):
        state = load(sim.store.conn, cache)
        load(sim.store.conn, cache)
    assert [s.name for s in state.services] == ["web"]
    assert caplog.text.count("svc-old is left alone: its stored spec is not a valid one") == 1
    assert "must be lowercase" in caplog.text
    sim.settle()
    assert sim.live("old") == [] and len(sim.live("web")) == 1
