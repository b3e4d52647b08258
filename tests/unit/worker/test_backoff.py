"""The worker's reconnect Backoff uses full jitter: pauses spread over [0, ceiling], never above it."""

from __future__ import annotations

import random
import statistics

from warren.worker.backoff import Backoff


def test_each_pause_is_drawn_between_zero_and_its_doubling_ceiling() -> None:
    calls: list[tuple[float, float]] = []

    def rand(lo: float, hi: float) -> float:
        calls.append((lo, hi))
        return (lo + hi) / 2

    b = Backoff(0.2, 1.0, rand=rand)
    assert [b.delay() for _ in range(5)] == [0.1, 0.2, 0.4, 0.5, 0.5]
    assert calls == [(0.0, 0.2), (0.0, 0.4), (0.0, 0.8), (0.0, 1.0), (0.0, 1.0)]
    b.reset()
    b.delay()
    assert calls[-1] == (0.0, 0.2)


def test_pauses_of_many_workers_are_spread_and_bounded() -> None:
    """A thousand workers that lost their manager at the same moment: their n-th pauses differ (no
    thundering herd in step), all lie within [0, ceiling], and they cover the range."""
    rng = random.Random(1234)
    workers = [Backoff(0.2, 2.0, rand=rng.uniform) for _ in range(1000)]
    for ceiling in (0.2, 0.4, 0.8, 1.6, 2.0, 2.0):
        pauses = [w.delay() for w in workers]
        assert all(0.0 <= p <= ceiling for p in pauses)
        assert len(set(pauses)) > 990  # not in step
        assert min(pauses) < 0.05 * ceiling and max(pauses) > 0.95 * ceiling
        assert abs(statistics.mean(pauses) - ceiling / 2) < 0.05 * ceiling
        assert statistics.pstdev(pauses) > 0.25 * ceiling  # uniform: ceiling / sqrt(12) ~ 0.29


def test_a_misbehaving_random_source_cannot_break_the_bounds() -> None:
    b = Backoff(0.5, 1.0, rand=lambda lo, hi: hi * 10)
    assert b.delay() == 0.5
    b = Backoff(0.5, 1.0, rand=lambda lo, hi: -1.0)
    assert b.delay() == 0.0


def test_the_default_source_is_random() -> None:
    b = Backoff(1.0, 1.0)
    assert len({b.delay() for _ in range(50)}) > 40
