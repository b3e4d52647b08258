"""What must hold after a chaos run, read from the managers themselves."""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable, Mapping, Sequence

from tests.integration.managers import ManagerProc

# The Raft core's lines naming a leader (rust/src/node.rs, watch_events), in every manager's log: the
# node won an election, or the leader it follows changed (`term` is the node's vote's term).
LEADER = re.compile(
    r"election won: now leader node=(?P<won>\d+) term=(?P<won_term>\d+)"
    r"|leader changed node=\d+ term=(?P<term>\d+) leader=Some\((?P<leader>\d+)\)"
)


def leaders_seen(text: str) -> list[tuple[int, int]]:
    """(term, node) of each leader a manager's log says it won or followed, in the log's order."""
    seen = []
    for match in LEADER.finditer(text):
        if match.group("won") is not None:
            seen.append((int(match.group("won_term")), int(match.group("won"))))
        else:
            seen.append((int(match.group("term")), int(match.group("leader"))))
    return seen


def leaders_out_of_order(logs: Mapping[str, str]) -> list[str]:
    """Managers that won or followed a leader ranked below one they had already won or followed.

    openraft (0.9, without `single-term-leader`) names a leader by (term, node ID), ordered by term
    then node ID; a voter grants, and a follower accepts, only a leader ID at least as high as its
    vote, which is persisted before it answers. Two nodes may win one term one after the other, the
    higher ID second (openraft's docs/data/leader_id), so "one leader per term" is not the rule; the
    rule is that each manager's own sequence of leaders never goes down, across its restarts too (its
    log holds every incarnation in order). A step down means a vote was granted against an earlier one,
    or lost with a restart: two quorums could then have chosen conflicting leaders.

    The order is read within one log, never across logs: a node logs its win when its watcher sees
    the role change, milliseconds after the quorum granted it, so a lower ID that won first may log its
    win after a higher one's (seen in CI: node 4 logged term 14 11 ms after node 5 did, and stepped
    down 1 ms later)."""
    found = []
    for label, text in logs.items():
        seen = leaders_seen(text)
        for a, b in zip(seen, seen[1:], strict=False):
            if b < a:
                found.append(f"{label}: leader {b[1]} of term {b[0]} after leader {a[1]} of term {a[0]}")
                break
    return found


def leader_violations(managers: Sequence[ManagerProc]) -> list[str]:
    """`leaders_out_of_order` over every incarnation's log of every manager."""
    return leaders_out_of_order({m.label: m.log_path.read_text(errors="replace") for m in managers})


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
