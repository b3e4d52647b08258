"""Percentiles and summaries of latency samples (seconds in, milliseconds out)."""

from __future__ import annotations

import math
from typing import Any


def percentile(sorted_samples: list[float], q: float) -> float:
    """The q-th percentile (0-100) by linear interpolation between closest ranks (numpy's default)."""
    if not sorted_samples:
        return math.nan
    pos = (len(sorted_samples) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_samples) - 1)
    return sorted_samples[lo] + (sorted_samples[hi] - sorted_samples[lo]) * (pos - lo)


def summarize_ms(samples_s: list[float]) -> dict[str, Any]:
    """count, mean, p50, p90, p99, p99.9 and max of `samples_s`, in milliseconds."""
    s = sorted(samples_s)
    if not s:
        return {"count": 0}
    return {
        "count": len(s),
        "mean_ms": 1000 * sum(s) / len(s),
        "min_ms": 1000 * s[0],
        "p50_ms": 1000 * percentile(s, 50),
        "p90_ms": 1000 * percentile(s, 90),
        "p99_ms": 1000 * percentile(s, 99),
        "p99_9_ms": 1000 * percentile(s, 99.9),
        "max_ms": 1000 * s[-1],
    }


def trial_row(
    scenario: str, key: str, what: str, event: str, seconds: list[float], failures: list[str] | None = None
) -> dict[str, Any]:
    """A report row for one measurement: its percentiles, and `samples_ms`, every trial's raw number
    (rounded to the microsecond), which the plots and `python -m benches compare` read. A failed trial
    (no number) is counted in `failed_trials` and its first reason noted."""
    stats = summarize_ms(seconds)
    row: dict[str, Any] = {
        "scenario": scenario,
        "key": key,
        "what": what,
        "event": event,
        "trials": len(seconds) + len(failures or []),
        **{k: stats.get(k) for k in ("p50_ms", "p90_ms", "p99_ms", "max_ms")},
        "samples_ms": [round(1000 * s, 3) for s in seconds],
    }
    if failures:
        row["failed_trials"] = len(failures)
        row["note"] = f"{len(failures)} trial(s) failed: {failures[0]}"
    return row
