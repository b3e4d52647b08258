"""Rolling updates on real workers (process runtime): gated on health checks; a new version that fails
its check pauses the update or rolls it back; `service rollback` returns to the previous spec."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.managers import get_json
from tests.integration.workers import Fleet, fleets
from warren.testing.wait import eventually


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[Fleet]:
    with fleets(tmp_path_factory.mktemp("rolling"), request) as make:
        f = make()
        f.start_managers(1)
        f.add_worker("process")
        f.add_worker("process")
        yield f


def spec(health_cmd: list[str], **update: Any) -> dict[str, Any]:
    return {
        "image": "local",
        "driver": "process",
        "command": ["sleep", "100000"],
        "replicas": 3,
        "health": {"kind": "cmd", "cmd": health_cmd, "interval_s": 0.3, "retries": 2, "timeout_s": 2},
        "update": {"parallelism": 1, "monitor_s": 1.0, **update},
    }


def service(fleet: Fleet, name: str) -> dict[str, Any]:
    result: dict[str, Any] = get_json(fleet.addr, f"/v1/services/{name}")
    return result


def healthy(fleet: Fleet, name: str, count: int) -> list[dict[str, Any]]:
    def check() -> list[dict[str, Any]] | None:
        running = fleet.running(name)
        return running if len(running) == count and all(t["health"] == "healthy" for t in running) else None

    return eventually(check, 30, f"{count} healthy tasks of {name}")


def test_update_rolls_out_new_tasks_start_first(fleet: Fleet) -> None:
    fleet.create("smooth", **spec(["true"], order="start-first", parallelism=2))
    old = {t["spec_digest"] for t in healthy(fleet, "smooth", 3)}
    fleet.update("smooth", env={"VERSION": "2"})
    eventually(
        lambda: (service(fleet, "smooth")["update_status"] or {}).get("state") == "completed",
        60,
        "the update to complete",
    )
    tasks = healthy(fleet, "smooth", 3)
    assert len({t["spec_digest"] for t in tasks}) == 1
    assert {t["spec_digest"] for t in tasks}.isdisjoint(old)
    fleet.cli("service", "rm", "smooth").ok()


def test_failing_health_check_pauses_the_update(fleet: Fleet) -> None:
    fleet.create("careful", **spec(["true"], failure_action="pause"))
    old_digest = healthy(fleet, "careful", 3)[0]["spec_digest"]
    fleet.update("careful", health={"kind": "cmd", "cmd": ["false"], "interval_s": 0.3, "retries": 2})
    status = eventually(
        lambda: (s := service(fleet, "careful")["update_status"]) and s.get("state") == "paused" and s,
        60,
        "the update to pause",
    )
    assert status.get("message"), status
    # The update stopped after its first batch: the other old tasks still run.
    old_running = [t for t in fleet.running("careful") if t["spec_digest"] == old_digest]
    assert len(old_running) >= 2, fleet.tasks("careful")
    inspect = fleet.cli("service", "inspect", "careful").ok()
    assert "paused" in inspect.stdout

    # `service rollback` returns to the previous spec: every task healthy on the old digest again.
    fleet.cli("service", "rollback", "--detach", "careful").ok()
    eventually(
        lambda: (service(fleet, "careful")["update_status"] or {}).get("state") == "rollback_completed",
        60,
        "the requested rollback to be reported complete",
    )
    tasks = healthy(fleet, "careful", 3)
    assert {t["spec_digest"] for t in tasks} == {old_digest}
    assert service(fleet, "careful")["spec"]["health"]["cmd"] == ["true"]
    fleet.cli("service", "rm", "careful").ok()


def test_failing_health_check_rolls_back_automatically(fleet: Fleet) -> None:
    fleet.create("undo", **spec(["true"], failure_action="rollback"))
    old_digest = healthy(fleet, "undo", 3)[0]["spec_digest"]
    fleet.update("undo", health={"kind": "cmd", "cmd": ["false"], "interval_s": 0.3, "retries": 2})
    eventually(
        lambda: (service(fleet, "undo")["update_status"] or {}).get("state") == "rollback_completed",
        60,
        "the automatic rollback to complete",
    )
    tasks = healthy(fleet, "undo", 3)
    assert {t["spec_digest"] for t in tasks} == {old_digest}
    assert service(fleet, "undo")["spec"]["health"]["cmd"] == ["true"]
    fleet.cli("service", "rm", "undo").ok()
