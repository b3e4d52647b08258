"""The drill's own handling of Ctrl-C and SIGTERM, so that whatever it started is stopped.

`Interrupts` turns SIGINT and SIGTERM into KeyboardInterrupt, except inside `deferred()` (a spawn, the
clean-up), where the signal is held until the block ends: a child must never be started without being
recorded. The daemons themselves are warren.testing's.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType
from typing import Any


class Interrupts:
    """While active, SIGINT and SIGTERM raise KeyboardInterrupt in the main thread, except inside
    `deferred()`, which holds the signal until the outermost deferred block ends."""

    def __init__(self) -> None:
        self._depth = 0
        self._pending: int | None = None
        self._previous: dict[int, Any] = {}

    @contextlib.contextmanager
    def active(self) -> Iterator[Interrupts]:
        if threading.current_thread() is not threading.main_thread():
            yield self  # signal handlers can only be set in the main thread; the caller owns them
            return
        for signum in (signal.SIGINT, signal.SIGTERM):
            self._previous[signum] = signal.signal(signum, self._handle)
        try:
            yield self
        finally:
            for number, handler in self._previous.items():
                signal.signal(number, handler)
            self._previous.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self._depth:
            self._pending = signum
            return
        raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")

    @contextlib.contextmanager
    def deferred(self) -> Iterator[None]:
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
            pending = self._pending
            if self._depth == 0 and pending is not None:
                self._pending = None
                raise KeyboardInterrupt(f"signal {signal.Signals(pending).name}")

    @property
    def pending(self) -> bool:
        return self._pending is not None
