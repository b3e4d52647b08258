"""The pause between rounds of failed calls to the managers (and between retries of a broken runtime
event stream)."""

from __future__ import annotations

import random
from collections.abc import Callable


class Backoff:
    """Pause between rounds of failed calls, with AWS's "full jitter": the n-th pause in a row is drawn
    uniformly from [0, min(maximum, initial * 2**n)], so that workers that lost their manager at the
    same moment (a failover) do not all come back in step. `rand(lo, hi)` draws it (tests inject one).
    """

    def __init__(
        self,
        initial_s: float,
        maximum_s: float,
        rand: Callable[[float, float], float] = random.uniform,
    ) -> None:
        self.initial_s = initial_s
        self.maximum_s = maximum_s
        self._rand = rand
        self._ceiling = min(initial_s, maximum_s)

    def delay(self) -> float:
        ceiling = self._ceiling
        self._ceiling = min(self._ceiling * 2, self.maximum_s)
        return min(max(self._rand(0.0, ceiling), 0.0), ceiling)

    def reset(self) -> None:
        self._ceiling = min(self.initial_s, self.maximum_s)
