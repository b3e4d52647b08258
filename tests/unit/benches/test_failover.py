"""Pure logic of the failover benchmarks: the longest gap between acknowledgements, and what a SIGTERMed
leader's log says about its hand-over."""

from __future__ import annotations

import pytest

from benches.client_failover import longest_gap
from benches.leader_failover import handover


def test_the_longest_gap_is_between_consecutive_acknowledgements() -> None:
    assert longest_gap([1.0, 1.1, 1.6, 1.7], 0.95, 1.75) == pytest.approx((0.5, 1.1))


def test_the_window_edges_count_as_the_ends_of_a_gap() -> None:
    assert longest_gap([1.0, 1.1], 0.0, 1.2) == pytest.approx((1.0, 0.0))  # nothing acknowledged at first
    assert longest_gap([1.0, 1.1], 0.9, 3.0) == pytest.approx((1.9, 1.1))  # nothing after 1.1


def test_acknowledgements_outside_the_window_are_ignored_and_none_means_the_whole_window() -> None:
    assert longest_gap([0.1, 5.0], 1.0, 2.0) == pytest.approx((1.0, 1.0))
    assert longest_gap([], 1.0, 2.5) == pytest.approx((1.5, 1.0))


def test_unsorted_acknowledgements_are_sorted_first() -> None:
    assert longest_gap([1.7, 1.0, 1.6, 1.1], 1.0, 1.7) == pytest.approx((0.5, 1.1))


LOG = """\
==== 09:32:01 start manager1@127.0.0.51:1: python -m warren.cli.main cluster init
2026-11-26 09:32:01,460 m1 INFO warren.daemons.manager: stop requested
2026-11-26 09:32:01,460 m1 INFO warren_raft.node: transferring leadership node=1 to=3 term=3
2026-11-26 09:32:01,816 m1 INFO warren.daemons.manager: leadership handed to raft id 3 before shutdown
2026-11-26 09:32:02,100 m1 INFO warren.daemons.manager: manager stopped
"""


def test_a_handed_over_leadership_is_read_with_its_duration() -> None:
    found = handover(LOG)
    assert found["handed_over"] is True
    assert found["handover_log_s"] == pytest.approx(0.356, abs=1e-6)
    assert "handover_error" not in found


def test_a_failed_hand_over_is_reported_with_its_reason() -> None:
    log = LOG.replace(
        "leadership handed to raft id 3 before shutdown",
        "could not hand leadership over before shutdown: leadership did not move to node 3 in time",
    )
    found = handover(log)
    assert found["handed_over"] is False
    assert found["handover_log_s"] is None
    assert found["handover_error"] == "leadership did not move to node 3 in time"
