"""The drill's wording: step lines, the verdict, the JSON document (warren/drill/report.py)."""

from __future__ import annotations

from warren.drill.report import STEP_TITLES, DrillResult, StepResult, format_duration, format_step, verdict


def passed(number: int, seconds: float = 0.1) -> StepResult:
    return StepResult(number, "passed", f"what step {number} saw", seconds)


def test_durations_are_milliseconds_below_a_second_else_tenths_of_seconds() -> None:
    assert format_duration(0.4124) == "412 ms"
    assert format_duration(0.0004) == "0 ms"
    assert format_duration(1.0) == "1.0 s"
    assert format_duration(4.83) == "4.8 s"


def test_a_passed_step_is_a_check_mark_line_with_its_timing() -> None:
    step = StepResult(2, "passed", "manager2 after SIGKILL of manager1", 0.412)
    assert format_step(step) == "✓ New leader elected: manager2 after SIGKILL of manager1 (412 ms)"


def test_a_failed_step_says_why_and_after_how_long() -> None:
    step = StepResult(4, "failed", "no drill-sleep 3/3 running within 30.0 s: 2/3 running", 30.01)
    assert format_step(step) == (
        "✗ Writes succeed: no drill-sleep 3/3 running within 30.0 s: 2/3 running (after 30.0 s)"
    )


def test_a_skipped_step_says_why_and_has_no_timing() -> None:
    line = format_step(StepResult(6, "skipped", "step 5 failed"))
    assert line == "- Manager rejoined: skipped (step 5 failed)"


def test_six_passed_steps_pass_the_drill() -> None:
    steps = [passed(n) for n in range(1, 7)]
    assert verdict(steps, 4.83) == "Drill passed: 6/6 steps in 4.8 s"


def test_the_verdict_names_the_failed_step_its_reason_and_the_skipped_ones() -> None:
    steps = [passed(1), StepResult(2, "failed", "no new leader within 30.0 s", 30.0),
             *(StepResult(n, "skipped", "step 2 failed") for n in range(3, 7))]
    assert verdict(steps, 33.2) == (
        "Drill FAILED: 1/6 steps passed, step 2 failed (new leader elected: no new leader within 30.0 s), "
        "steps 3, 4, 5, 6 skipped, in 33.2 s"
    )


def test_a_failure_that_does_not_stop_the_drill_is_still_a_failed_drill() -> None:
    steps = [passed(1), passed(2), passed(3), StepResult(4, "failed", "task gone", 5.6), passed(5), passed(6)]
    text = verdict(steps, 11.2)
    assert text.startswith("Drill FAILED: 5/6 steps passed, step 4 failed (writes succeed: task gone)")
    assert "skipped" not in text


def test_an_interrupted_drill_never_passes_and_counts_the_steps_it_never_reached() -> None:
    steps = [passed(n) for n in range(1, 4)]
    assert verdict(steps, 2.0) == "Drill FAILED: 3/6 steps passed, steps 4, 5, 6 skipped, in 2.0 s"


def test_the_document_lists_every_pid_the_drill_started_once() -> None:
    result = DrillResult(
        steps=tuple(passed(n, 0.0123) for n in range(1, 7)),
        duration_s=4.56789,
        settings={"managers": 3},
        data_dir="/tmp/warren-drill-x",
        kept=False,
        processes=({"label": "manager1", "role": "manager", "pids": [10, 20]},
                   {"label": "worker", "role": "worker", "pids": [30]}),
        task_pids=(40, 41, 30),
    )
    doc = result.to_doc()
    assert doc["passed"] is True and doc["verdict"] == "Drill passed: 6/6 steps in 4.6 s"
    assert doc["duration_s"] == 4.568
    assert doc["pids"] == [10, 20, 30, 40, 41]
    assert [s["title"] for s in doc["steps"]] == list(STEP_TITLES)
    assert doc["steps"][0] == {"step": 1, "title": "Cluster started", "status": "passed",
                               "message": "what step 1 saw", "duration_ms": 12.3, "details": {}}
