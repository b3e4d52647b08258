"""Task states and the rules every part of Warren agrees on: the order a task's state moves in and which
states are final (the fields of a service's spec a task is made from: warren.spec.service.TaskSpec).

    new -> pending -> assigned -> starting -> running -> complete | failed | shutdown | rejected

A task's state only ever moves forward (apply refuses a move backwards, so a late or repeated status
report cannot resurrect a finished task). `pending` is a task the scheduler could not place yet; its
message says why. A restart is a new task in the same slot, never a task going back to `starting`.
"""

from __future__ import annotations

from typing import Final, Literal

DesiredState = Literal["running", "shutdown"]

NEW: Final = "new"
PENDING: Final = "pending"
ASSIGNED: Final = "assigned"
STARTING: Final = "starting"
RUNNING: Final = "running"
COMPLETE: Final = "complete"  # exited with status 0
# Exited with another status, could not start, failed its health check, or its node went down.
FAILED: Final = "failed"
# Stopped because it was asked to (scale down, rolling update, drain, service removed).
SHUTDOWN: Final = "shutdown"
REJECTED: Final = "rejected"  # the worker could not run it at all (no such driver on the worker)

RANK: Final[dict[str, int]] = {
    NEW: 0,
    PENDING: 1,
    ASSIGNED: 2,
    STARTING: 3,
    RUNNING: 4,
    COMPLETE: 5,
    FAILED: 5,
    SHUTDOWN: 5,
    REJECTED: 5,
}
TERMINAL: Final = frozenset({COMPLETE, FAILED, SHUTDOWN, REJECTED})
# The same, as an SQL list for `state IN ...` (constants of ours, not user input).
TERMINAL_SQL: Final = "(" + ", ".join(f"'{s}'" for s in sorted(TERMINAL)) + ")"

Health = Literal["none", "starting", "healthy", "unhealthy"]


def can_move(old: str, new: str) -> bool:
    """Whether a task in state `old` may be set to `new`: forward only; staying put (to update the
    message) is allowed until the task is final."""
    if old in TERMINAL:
        return False
    return RANK[new] >= RANK[old]
