"""What must hold after a chaos run, read from the managers themselves."""

from __future__ import annotations

import bisect
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence

from tests.integration.managers import ManagerProc

# The Raft core's line when a node wins an election (rust/src/node.rs), in every manager's log.
WON = re.compile(r"election won: now leader node=(\d+) term=(\d+)")


def leaders_by_term(logs: Iterable[str]) -> dict[int, set[int]]:
    """term -> the Raft IDs that logged winning it."""
    terms: dict[int, set[int]] = defaultdict(set)
    for text in logs:
        for match in WON.finditer(text):
            terms[int(match.group(2))].add(int(match.group(1)))
    return dict(terms)


def two_leaders(managers: Sequence[ManagerProc]) -> list[str]:
    """Each term that more than one manager won (from every incarnation's log)."""
    terms = leaders_by_term(m.log_path.read_text(errors="replace") for m in managers)
    return [f"term {t}: won by nodes {sorted(ids)}" for t, ids in sorted(terms.items()) if len(ids) > 1]


def longest_gaps(ok_times: Sequence[float], windows: Iterable[tuple[str, float, float]]) -> dict[str, float]:
    """kind -> the longest time without an acknowledged operation inside any of its (kind, start, end)
    windows: from the last acknowledgement before the fault (or its start) to the first after."""
    times = sorted(ok_times)
    worst: dict[str, float] = {}
    for kind, start, end in windows:
        lo, hi = bisect.bisect_left(times, start), bisect.bisect_right(times, end)
        first = times[lo - 1] if lo > 0 else start
        last = times[hi] if hi < len(times) else end
        points = [first, *times[lo:hi], last]
        gap = max((b - a for a, b in zip(points, points[1:], strict=False)), default=0.0)
        worst[kind] = max(worst.get(kind, 0.0), gap)
    return worst
