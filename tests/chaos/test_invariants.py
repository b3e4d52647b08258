"""The chaos run's own checks, on hand-made inputs: a manager's leaders going down, and the longest gap."""

from __future__ import annotations

from tests.chaos.invariants import leaders_out_of_order, leaders_seen, longest_gaps


def line(t: str, text: str) -> str:
    return f"2026-12-07 13:23:{t} manager-x INFO warren_raft.node: {text}\n"


def won(t: str, node: int, term: int) -> str:
    return line(t, f"election won: now leader node={node} term={term}")


def follows(t: str, node: int, term: int, leader: int | None) -> str:
    shown = "None" if leader is None else f"Some({leader})"
    return line(t, f"leader changed node={node} term={term} leader={shown}")


def test_a_managers_leaders_may_rise_within_a_term_but_never_go_down() -> None:
    m1 = won("05,911", 1, 2) + follows("07,000", 1, 3, None) + follows("07,010", 1, 3, 2)
    m1 += won("09,000", 1, 5)
    m1 += follows("09,000", 1, 5, 1) + follows("09,100", 1, 5, 3)  # node 3 won term 5 too: it supersedes
    assert leaders_seen(m1) == [(2, 1), (3, 2), (5, 1), (5, 1), (5, 3)]
    # Node 4 logged its win of term 14 after node 5 had logged its own (the CI case): each log rises.
    m4 = won("23,878", 4, 14) + follows("23,879", 4, 14, 4) + follows("23,879", 4, 14, 5)
    m5 = won("23,867", 5, 14) + follows("23,868", 5, 14, 5)
    assert leaders_out_of_order({"m1": m1, "m4": m4, "m5": m5}) == []
    # The same leader again (a restart that stays leader) is no step down.
    assert leaders_out_of_order({"m1": m1 + won("09,500", 1, 6) + won("10,000", 1, 6)}) == []


def test_a_manager_following_a_lower_leader_than_before_is_an_anomaly() -> None:
    # Within a term: node 1 followed after node 3 (a vote granted against an earlier one).
    m2 = follows("09,100", 2, 5, 3) + follows("09,200", 2, 5, 1)
    assert leaders_out_of_order({"m2": m2}) == ["m2: leader 1 of term 5 after leader 3 of term 5"]
    # Across a restart: the vote of term 6 lost, an older term's leader followed again.
    m3 = won("09,000", 3, 6) + line("09,500", "state restored") + follows("10,000", 3, 5, 2)
    assert leaders_out_of_order({"m3": m3}) == ["m3: leader 2 of term 5 after leader 3 of term 6"]
    # Winning below a leader it followed counts too; only the first step down of a log is named.
    m4 = follows("09,000", 4, 7, 5) + won("09,100", 4, 7) + follows("09,200", 4, 6, 1)
    assert leaders_out_of_order({"m4": m4}) == ["m4: leader 4 of term 7 after leader 5 of term 7"]


def test_longest_gap_spans_from_the_last_ack_before_a_fault_to_the_first_after() -> None:
    acks = [0.0, 1.0, 1.1, 4.0, 4.2, 9.0]
    # Fault from 1.5 to 3.0: nothing acknowledged inside; the gap runs from 1.1 to 4.0.
    assert longest_gaps(acks, [("kill", 1.5, 3.0)]) == {"kill": 4.0 - 1.1}
    # Two faults of one kind: the worst counts; a window with acks inside splits the gap.
    worst = longest_gaps(acks, [("stop", 0.5, 1.05), ("stop", 4.1, 8.0)])
    assert worst == {"stop": 9.0 - 4.2}
    # No acknowledgement at all: the window itself.
    assert longest_gaps([], [("split", 2.0, 5.0)]) == {"split": 3.0}
