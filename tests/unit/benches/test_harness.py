"""The benchmark harness: budgets stop a scenario (its cleanup runs), failures are recorded."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from benches.harness import Scenario, run_scenario


def test_a_scenario_past_its_budget_is_stopped_and_cleans_up(tmp_path: Path) -> None:
    cleaned: list[bool] = []

    def forever(work_dir: Path) -> dict[str, Any]:
        try:
            while True:  # a scenario that never ends by itself: the behaviour under test
                time.sleep(0.05)
        finally:
            cleaned.append(True)

    t0 = time.monotonic()
    result = run_scenario(Scenario("forever", "nothing", 0.3, forever), tmp_path)
    assert time.monotonic() - t0 < 5
    assert cleaned == [True]
    assert result["status"] == "error"
    assert "ran past its 0.3 s budget" in result["error"]
    assert result["budget_s"] == 0.3


def test_an_except_exception_in_a_scenario_does_not_swallow_the_deadline(tmp_path: Path) -> None:
    def stubborn(work_dir: Path) -> dict[str, Any]:
        while True:  # a scenario that never ends by itself, and swallows exceptions
            try:
                time.sleep(0.05)
            except Exception:  # noqa: BLE001 - what a careless scenario might do
                pass

    result = run_scenario(Scenario("stubborn", "nothing", 0.2, stubborn), tmp_path)
    assert "budget" in result["error"]


def test_a_failing_scenario_is_recorded_and_the_budget_timer_is_cleared(tmp_path: Path) -> None:
    def broken(work_dir: Path) -> dict[str, Any]:
        raise RuntimeError("no engine")

    result = run_scenario(Scenario("broken", "nothing", 0.2, broken), tmp_path)
    assert result["status"] == "error"
    assert result["error"] == "RuntimeError: no engine"
    time.sleep(0.4)  # the alarm must not fire after the scenario ended (it would raise here)


def test_a_scenario_gets_its_own_work_dir_and_its_result_is_kept(tmp_path: Path) -> None:
    def ok(work_dir: Path) -> dict[str, Any]:
        return {"status": "ok", "rows": [], "dir": str(work_dir)}

    result = run_scenario(Scenario("ok", "one thing", 10, ok), tmp_path)
    assert result["status"] == "ok"
    assert result["dir"] == str(tmp_path / "ok")
    assert result["measures"] == "one thing"
    assert result["wall_s"] < 1
