"""The chaos run's own checks, on hand-made inputs: leaders of a term out of order, and the longest gap."""

from __future__ import annotations

from tests.chaos.invariants import leaders_out_of_order, longest_gaps, wins_by_term

LOG_1 = """\
2026-12-07 13:23:05,911 manager-1 INFO warren_raft.node: election won: now leader node=1 term=2
2026-12-07 13:23:09,000 manager-1 INFO warren_raft.node: election won: now leader node=1 term=5
"""
LOG_2 = "2026-12-07 13:23:07,000 manager-2 INFO warren_raft.node: election won: now leader node=2 term=3\n"
T1, T2, T5 = "2026-12-07 13:23:05,911", "2026-12-07 13:23:07,000", "2026-12-07 13:23:09,000"
LOG_3 = "2026-12-07 13:23:09,100 manager-3 INFO warren_raft.node: election won: now leader node=3 term=5\n"


def test_two_winners_of_a_term_must_come_in_rising_id_order() -> None:
    assert wins_by_term([LOG_1, LOG_2]) == {2: [(T1, 1)], 3: [(T2, 2)], 5: [(T5, 1)]}
    # openraft's leader IDs are (term, node): node 3 winning term 5 after node 1 supersedes it.
    assert leaders_out_of_order([LOG_1, LOG_2, LOG_3]) == []
    # Node 1 winning term 5 after node 3 did: two quorums granted conflicting votes.
    early_3 = LOG_3.replace("13:23:09,100", "13:23:08,500")
    assert leaders_out_of_order([LOG_1, early_3]) == ["term 5: node 1 won after node 3 ([3, 1])"]
    # The same node winning again (a restart that stays leader) is one win.
    again = LOG_1.splitlines()[1].replace("13:23:09,000", "13:23:09,500") + "\n"
    assert leaders_out_of_order([LOG_1, again]) == []
    # ... unless another won in between.
    assert leaders_out_of_order([LOG_1, LOG_3, again]) == ["term 5: node 1 won after node 3 ([1, 3, 1])"]


def test_longest_gap_spans_from_the_last_ack_before_a_fault_to_the_first_after() -> None:
    acks = [0.0, 1.0, 1.1, 4.0, 4.2, 9.0]
    # Fault from 1.5 to 3.0: nothing acknowledged inside; the gap runs from 1.1 to 4.0.
    assert longest_gaps(acks, [("kill", 1.5, 3.0)]) == {"kill": 4.0 - 1.1}
    # Two faults of one kind: the worst counts; a window with acks inside splits the gap.
    worst = longest_gaps(acks, [("stop", 0.5, 1.05), ("stop", 4.1, 8.0)])
    assert worst == {"stop": 9.0 - 4.2}
    # No acknowledgement at all: the window itself.
    assert longest_gaps([], [("split", 2.0, 5.0)]) == {"split": 3.0}
