"""Task states and the rules every part of Warren agrees on: the order a task's state moves in, which
states are final, and which fields of a service's spec a task is made from.

    new -> pending -> assigned -> starting -> running -> complete | failed | shutdown | rejected

A task's state only ever moves forward (apply refuses a move backwards, so a late or repeated status
report cannot resurrect a finished task). `pending` is a task the scheduler could not place yet; its
message says why. A restart is a new task in the same slot, never a task going back to `starting`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any, Final, Literal

import orjson

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


# The parts of a service spec a task is made from: a change to any of them rolls out new tasks (a
# rolling update); a change to the others (replicas, mode, labels, update policy) does not.
TASK_FIELDS: Final = (
    "driver",
    "image",
    "command",
    "env",
    "publish",
    "resources",
    "constraints",
    "restart",
    "health",
    "stop_timeout_s",
    "secrets",
)
# Fields a task spec leaves out while empty: added after services were already running, so a spec
# without them keeps the digest (and tasks) it had.
_OMITTED_WHEN_EMPTY: Final = frozenset({"secrets"})


def task_spec(service_spec: Mapping[str, Any]) -> dict[str, Any]:
    """The task-defining part of a service spec."""
    spec = {k: service_spec.get(k) for k in TASK_FIELDS}
    for key in _OMITTED_WHEN_EMPTY:
        if not spec[key]:
            del spec[key]
    return spec


def spec_digest(service_spec: Mapping[str, Any]) -> str:
    """A short digest of the task-defining part of a spec: tasks with another digest are outdated."""
    body = orjson.dumps(task_spec(service_spec), option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(body).hexdigest()[:16]
