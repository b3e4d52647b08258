"""Percentiles and summaries of latency samples (seconds in, milliseconds out), and the two tests
`python -m benches compare` uses to tell a real change from noise."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


def percentile(sorted_samples: list[float], q: float) -> float:
    """The q-th percentile (0-100) by linear interpolation between closest ranks (numpy's default)."""
    if not sorted_samples:
        return math.nan
    pos = (len(sorted_samples) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_samples) - 1)
    return sorted_samples[lo] + (sorted_samples[hi] - sorted_samples[lo]) * (pos - lo)


def samples_ms(seconds: list[float]) -> list[float]:
    """Raw samples as a row keeps them: milliseconds rounded to the microsecond, in measured order."""
    return [round(1000 * s, 3) for s in seconds]


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
        "samples_ms": samples_ms(seconds),
    }
    if failures:
        row["failed_trials"] = len(failures)
        row["note"] = f"{len(failures)} trial(s) failed: {failures[0]}"
    return row


# -- is it noise? ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Test:
    """A two-sided comparison of `new` against `old`: `p` is the chance of a difference at least this
    large if both came from one distribution; `direction` is +1 if `new` tends to be larger, -1 if
    smaller, 0 if neither; `name` says which test, for the reader."""

    p: float
    direction: int
    name: str


def mann_whitney(old: list[float], new: list[float]) -> Test:
    """Mann-Whitney U (Wilcoxon rank-sum) with the normal approximation, tie and continuity corrections:
    does one sample tend to hold larger values than the other? Needs no shape assumption, so it suits
    skewed latency samples. The approximation is fair from about 8 samples a side."""
    n1, n2 = len(old), len(new)
    if n1 == 0 or n2 == 0:
        return Test(1.0, 0, "Mann-Whitney U (empty side)")
    pooled = sorted([(v, 0) for v in old] + [(v, 1) for v in new])
    n = n1 + n2
    rank_sum_new = 0.0
    tie_term = 0.0
    i = 0
    while i < n:
        j = i
        while j + 1 < n and pooled[j + 1][0] == pooled[i][0]:
            j += 1
        rank = (i + j) / 2 + 1  # ranks are 1-based; ties share their average rank
        rank_sum_new += rank * sum(1 for k in range(i, j + 1) if pooled[k][1] == 1)
        t = j - i + 1
        tie_term += t**3 - t
        i = j + 1
    u = rank_sum_new - n2 * (n2 + 1) / 2
    mean = n1 * n2 / 2
    var = n1 * n2 / 12 * ((n + 1) - tie_term / (n * (n - 1))) if n > 1 else 0.0
    if var <= 0:
        return Test(1.0, 0, "Mann-Whitney U (all values equal)")
    z = (abs(u - mean) - 0.5) / math.sqrt(var)
    p = min(math.erfc(max(z, 0.0) / math.sqrt(2)), 1.0)
    direction = (u > mean) - (u < mean)
    return Test(p, direction, f"Mann-Whitney p={p:.2g}")


def tail_test(old: list[float], new: list[float]) -> Test:
    """Did the worst case move? If `new` has the larger maximum, k = how many new samples exceed every
    old one; if both were one distribution (exchangeable samples), the chance that the k largest pooled
    values all come from `new` is C(n_new, k) / C(n_old + n_new, k). Symmetric when `old` has the larger
    maximum. One slow trial out of 20 is not evidence; several above the old worst case are."""
    if not old or not new:
        return Test(1.0, 0, "tail test (empty side)")
    direction = (max(new) > max(old)) - (max(new) < max(old))
    hi, lo = (new, old) if direction > 0 else (old, new)
    top = max(lo)
    k = sum(1 for v in hi if v > top)
    if k == 0:
        return Test(1.0, 0, "tail test k=0")
    p = math.comb(len(hi), k) / math.comb(len(hi) + len(lo), k)
    return Test(p, direction, f"tail test k={k} p={p:.2g}")
