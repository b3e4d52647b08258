"""`python -m benches compare` and the tests it rests on: a real change is flagged, noise is not, bad input
exits 2 with one line."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from benches import compare
from benches.stats import mann_whitney, tail_test


def lognormal(median_ms: float, n: int, seed: int, spread: float = 0.2) -> list[float]:
    rng = random.Random(seed)
    return [round(median_ms * rng.lognormvariate(0, spread), 3) for _ in range(n)]


def row(key: str, samples: list[float] | None = None, **fields: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"key": key, "scenario": key.split("/")[0]}
    if samples is not None:
        s = sorted(samples)
        out.update(p50_ms=s[(len(s) - 1) // 2], max_ms=s[-1], samples_ms=samples)
    out.update(fields)
    return out


def run(*rows: dict[str, Any], timestamp: str = "20260101T000000Z") -> dict[str, Any]:
    return {
        "timestamp": timestamp,
        "machine": {"git_commit": "abc"},
        "scenarios": {"s": {"rows": list(rows)}},
    }


def verdicts(old: dict[str, Any], new: dict[str, Any]) -> dict[tuple[str, str], str]:
    return {(c.key, c.field): c.verdict for c in compare.compare(old, new)}


def test_mann_whitney_matches_the_textbook_value_for_separated_samples() -> None:
    test = mann_whitney([float(v) for v in range(1, 11)], [float(v) for v in range(11, 21)])
    assert test.p == pytest.approx(1.8267e-4, rel=1e-3)  # scipy: mannwhitneyu(..., method="asymptotic")
    assert test.direction == 1
    assert mann_whitney([1.0, 1.0], [1.0, 1.0]).p == 1.0


def test_tail_test_needs_several_samples_beyond_the_old_worst_case() -> None:
    old = [float(v) for v in range(20)]
    one_outlier = old[:-1] + [100.0]
    assert tail_test(old, one_outlier).p == pytest.approx(20 / 40)  # k=1: a coin flip
    five_beyond = [float(v) for v in range(5, 25)]
    assert tail_test(old, five_beyond).p == pytest.approx(0.02356, rel=1e-3)
    assert tail_test(old, five_beyond).direction == 1


def test_a_shifted_failover_distribution_is_a_regression_and_exits_1(tmp_path: Path) -> None:
    old = run(row("leader_failover/sigkill", lognormal(500, 20, seed=1)))
    new = run(row("leader_failover/sigkill", lognormal(700, 20, seed=2)), timestamp="20260102T000000Z")
    got = verdicts(old, new)
    assert got[("leader_failover/sigkill", "p50_ms")] == "regression"
    assert got[("leader_failover/sigkill", "max_ms")] == "regression"
    (tmp_path / "old.json").write_text(json.dumps(old))
    (tmp_path / "new.json").write_text(json.dumps(new))
    assert compare.main([str(tmp_path / "old.json"), str(tmp_path / "new.json")]) == 1
    assert compare.main([str(tmp_path / "new.json"), str(tmp_path / "old.json")]) == 0  # an improvement


def test_a_large_median_change_in_a_few_noisy_samples_is_noise() -> None:
    old = run(row("containers/crash", [300.0, 900.0, 350.0, 1200.0, 400.0]))
    new = run(row("containers/crash", [1000.0, 320.0, 800.0, 380.0, 500.0]), timestamp="2")
    change = {c.field: c for c in compare.compare(old, new)}["p50_ms"]
    assert change.relative is not None and change.relative > 0.10
    assert change.verdict == "noise"


def test_one_slow_trial_out_of_twenty_is_not_a_max_regression() -> None:
    base = lognormal(500, 20, seed=3)
    worse_once = base[:-1] + [max(base) * 1.5]
    got = verdicts(run(row("failover/3", base)), run(row("failover/3", worse_once), timestamp="2"))
    assert got[("failover/3", "max_ms")] == "noise"
    assert got[("failover/3", "p50_ms")] == "same"


def test_a_significant_but_tiny_latency_shift_is_same() -> None:
    old = run(row("commit_latency/3/sequential", lognormal(1.0, 2000, seed=4)))
    new = run(row("commit_latency/3/sequential", lognormal(1.05, 2000, seed=5)), timestamp="2")
    assert verdicts(old, new) == {("commit_latency/3/sequential", "p50_ms"): "same"}  # no max: not recovery


def test_without_samples_the_threshold_decides_and_throughput_is_higher_is_better() -> None:
    old = run(row("commit_latency/3/concurrent", p50_ms=3.0, throughput_per_s=20_000.0))
    new = run(row("commit_latency/3/concurrent", p50_ms=3.1, throughput_per_s=15_000.0), timestamp="2")
    got = verdicts(old, new)
    assert got[("commit_latency/3/concurrent", "p50_ms")] == "same"
    assert got[("commit_latency/3/concurrent", "throughput_per_s")] == "regression"
    assert verdicts(
        run(row("rss/manager", value_mb=60.0)), run(row("rss/manager", value_mb=50.0), timestamp="2")
    ) == {("rss/manager", "value_mb"): "improvement"}


def test_a_row_that_now_errors_is_a_regression() -> None:
    old = run(row("schedule/1000", p50_ms=9000.0))
    new = run(row("schedule/1000", error="HarnessError: no workers"), timestamp="2")
    assert verdicts(old, new) == {("schedule/1000", "—"): "regression"}


def test_rows_carried_from_the_run_they_are_compared_with_are_same_run() -> None:
    old = run(row("failover/3", lognormal(500, 20, seed=6)), timestamp="T1")
    new = {
        "timestamp": "T2",
        "scenarios": {
            "failover": {"rows": old["scenarios"]["s"]["rows"], "carried_from": {"timestamp": "T1"}},
            "other": {"rows": [row("schedule/100", p50_ms=400.0)]},
        },
    }
    changes = compare.compare(old, new)
    assert {c.verdict for c in changes} == {"same run"}
    assert all(c.carried for c in changes)
    text = compare.render(changes, old, new, ("old.json", "new.json"))
    assert "failover/3 *" in text and "only in NEW: schedule/100" in text


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "cannot read"), ("{", "is not JSON"), ('{"rows": []}', "is not a benchmark result")],
)
def test_bad_input_exits_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str | None, message: str
) -> None:
    good = tmp_path / "good.json"
    good.write_text(json.dumps(run(row("failover/3", p50_ms=1.0))))
    bad = tmp_path / "bad.json"
    if content is not None:
        bad.write_text(content)
    assert compare.main([str(bad), str(good)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_a_usage_error_exits_2() -> None:
    assert compare.main(["only-one.json"]) == 2
    assert compare.main(["a.json", "b.json", "--alpha", "2"]) == 2
