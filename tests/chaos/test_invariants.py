"""The chaos run's own checks, on hand-made inputs: two leaders in a term, and the longest gap."""

from __future__ import annotations

from tests.chaos.invariants import leaders_by_term, longest_gaps

LOG_1 = """\
2026-12-07 13:23:05,911 manager-1 INFO warren_raft.node: election won: now leader node=1 term=2
2026-12-07 13:23:09,000 manager-1 INFO warren_raft.node: election won: now leader node=1 term=5
"""
LOG_2 = "2026-12-07 13:23:07,000 manager-2 INFO warren_raft.node: election won: now leader node=2 term=3\n"
LOG_3 = "2026-12-07 13:23:09,100 manager-3 INFO warren_raft.node: election won: now leader node=3 term=5\n"


def test_a_term_won_by_two_nodes_is_found_across_logs() -> None:
    assert leaders_by_term([LOG_1, LOG_2]) == {2: {1}, 3: {2}, 5: {1}}
    both = leaders_by_term([LOG_1, LOG_2, LOG_3])
    assert both[5] == {1, 3}
    assert [t for t, ids in both.items() if len(ids) > 1] == [5]


def test_longest_gap_spans_from_the_last_ack_before_a_fault_to_the_first_after() -> None:
    acks = [0.0, 1.0, 1.1, 4.0, 4.2, 9.0]
    # Fault from 1.5 to 3.0: nothing acknowledged inside; the gap runs from 1.1 to 4.0.
    assert longest_gaps(acks, [("kill", 1.5, 3.0)]) == {"kill": 4.0 - 1.1}
    # Two faults of one kind: the worst counts; a window with acks inside splits the gap.
    worst = longest_gaps(acks, [("stop", 0.5, 1.05), ("stop", 4.1, 8.0)])
    assert worst == {"stop": 9.0 - 4.2}
    # No acknowledgement at all: the window itself.
    assert longest_gaps([], [("split", 2.0, 5.0)]) == {"split": 3.0}
