"""Proposals waiting for their answers, so that the leader's own loops can let those answers go first.

A write's answer comes back from the Raft core after its entry is applied, through a thread-safe
callback into the event loop. The apply also wakes the reconcile loop (Store.on_change), which plans on
the same event loop: when it planned at once, the answer waited behind the plan (in 2,798 of 2,800
sequential writes measured; docs/decisions.md, "Where an API write's milliseconds go"). `InFlight`
counts the proposals between propose and answer; `settled(timeout_s)` returns once none is left, or
after `timeout_s` (under a steady stream of concurrent writes there is always one: a pass must still
run).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator


class InFlight:
    def __init__(self) -> None:
        self.count = 0
        self._none = asyncio.Event()
        self._none.set()

    @contextlib.contextmanager
    def track(self) -> Iterator[None]:
        """Around one proposal's wait for its answer (however it ends)."""
        self.count += 1
        self._none.clear()
        try:
            yield
        finally:
            self.count -= 1
            if self.count == 0:
                self._none.set()

    async def settled(self, timeout_s: float) -> bool:
        """Once no proposal is waiting for its answer (True), or after `timeout_s` (False)."""
        if self.count == 0:
            return True
        try:
            async with asyncio.timeout(timeout_s):
                await self._none.wait()
        except TimeoutError:
            return False
        return True
