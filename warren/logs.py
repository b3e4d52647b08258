"""Daemon logging: one stderr format with the node's name, and no floods of repeated lines.

openraft reports every failed heartbeat to an unreachable peer (several lines every 50 ms while a
manager is down). `RepeatFilter` lets the first such line through, then drops lines with the same
logger, level and message start for `window_s`, and says how many it dropped when it next lets one pass.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable

# Lines whose first this-many characters match count as "the same" (they differ in addresses/ids later).
_KEY_CHARS = 48


class RepeatFilter(logging.Filter):
    def __init__(self, window_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.window_s = window_s
        self.clock = clock
        self._seen: dict[tuple[str, int, str], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True  # INFO events are each meaningful (elections, membership): never dropped
        key = (record.name, record.levelno, record.getMessage()[:_KEY_CHARS])
        now = self.clock()
        last = self._seen.get(key)
        if last is not None and now - last[0] < self.window_s:
            self._seen[key] = (last[0], last[1] + 1)
            return False
        if last is not None and last[1]:
            dropped = f"{last[1]} similar lines in the last {self.window_s:g} s dropped"
            record.msg = f"{record.getMessage()} ({dropped})"
            record.args = None
        self._seen[key] = (now, 0)
        if len(self._seen) > 1024:  # bounded: forget the oldest half
            for old in sorted(self._seen, key=lambda k: self._seen[k][0])[:512]:
                del self._seen[old]
        return True


def setup(node_name: str, *, repeat_window_s: float) -> None:
    """Log INFO and above to stderr, each line naming the node, with repeats of warnings rate-limited."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(f"%(asctime)s {node_name} %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RepeatFilter(repeat_window_s))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per peer request otherwise
