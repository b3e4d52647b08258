"""RepeatFilter: repeated warnings are logged once per window and counted; INFO is never dropped."""

from __future__ import annotations

import logging

from warren.logs import RepeatFilter


def record(level: int, msg: str, name: str = "warren_raft.openraft") -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, msg, None, None)


def test_repeats_are_dropped_within_the_window_and_counted_after() -> None:
    now = [0.0]
    f = RepeatFilter(10.0, clock=lambda: now[0])
    line = "error replication to target=3 error=Unreachable node: cannot connect to 127.0.0.3:7946"
    assert f.filter(record(logging.WARNING, line))
    now[0] = 1.0
    assert not f.filter(record(logging.WARNING, line))
    assert not f.filter(record(logging.WARNING, line.replace("7946", "7947")))  # same start: same line
    assert f.filter(record(logging.ERROR, line)), "another level is another line"
    now[0] = 10.5
    passed = record(logging.WARNING, line)
    assert f.filter(passed)
    assert passed.getMessage().endswith("(2 similar lines in the last 10 s dropped)")
    now[0] = 11.0
    assert not f.filter(record(logging.WARNING, line))


def test_info_lines_are_never_dropped() -> None:
    f = RepeatFilter(10.0, clock=lambda: 0.0)
    assert all(f.filter(record(logging.INFO, "election won: now leader node=1 term=2")) for _ in range(5))


def test_memory_stays_bounded() -> None:
    now = [0.0]
    f = RepeatFilter(10.0, clock=lambda: now[0])
    for i in range(5000):
        now[0] = i * 0.001
        f.filter(record(logging.WARNING, f"{i:06d} distinct message"))
    assert len(f._seen) <= 1024
