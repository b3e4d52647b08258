"""What must hold after a chaos run, read from the managers themselves."""

from __future__ import annotations

import bisect
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence

from tests.integration.managers import ManagerProc

# The Raft core's line when a node wins an election (rust/src/node.rs), in every manager's log, after
# the log's timestamp (warren/logs.py: "%(asctime)s <node> LEVEL name: message").
WON = re.compile(
    r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) .*election won: now leader node=(\d+) term=(\d+)", re.M
)


def wins_by_term(logs: Iterable[str]) -> dict[int, list[tuple[str, int]]]:
    """term -> its elections won, as (timestamp, Raft ID) in time order, from every log."""
    terms: dict[int, list[tuple[str, int]]] = defaultdict(list)
    for text in logs:
        for match in WON.finditer(text):
            terms[int(match.group(3))].append((match.group(1), int(match.group(2))))
    return {t: sorted(wins) for t, wins in terms.items()}


def leaders_out_of_order(logs: Iterable[str]) -> list[str]:
    """Elections that no correct Raft could have held.

    openraft (0.9, without `single-term-leader`) names a leader by (term, node ID), ordered by term then
    node ID, and a voter grants only a leader ID above every one it granted before: two nodes may win
    the same term one after the other, the higher ID second, and the later one supersedes the earlier
    (openraft's docs/data/leader_id). So within a term, the winners in time order must have rising
    IDs; a lower ID winning after a higher one, or one ID winning, losing to another and winning again,
    means two quorums granted conflicting votes. (Log times are to the millisecond, one clock: winners
    within the same millisecond are taken in ID order.)"""
    found = []
    for term, wins in sorted(wins_by_term(logs).items()):
        ids = [node for i, (_, node) in enumerate(wins) if i == 0 or node != wins[i - 1][1]]
        for (a, b) in zip(ids, ids[1:], strict=False):
            if b <= a:
                found.append(f"term {term}: node {b} won after node {a} ({[n for _, n in wins]})")
                break
    return found


def leader_violations(managers: Sequence[ManagerProc]) -> list[str]:
    """`leaders_out_of_order` over every incarnation's log of every manager."""
    return leaders_out_of_order(m.log_path.read_text(errors="replace") for m in managers)


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
