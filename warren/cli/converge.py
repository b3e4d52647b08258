"""Whether a change to a service has converged, failed, or is still under way: a pure reading of the
service and its tasks as the API returns them (`service create|update|scale|rollback` wait on it).

Converged: no rolling update (or rollback) of the current spec in progress, as many tasks of the
current spec (`spec_digest`) running — and healthy, if the spec has a health check — as the service
wants, none of an older spec still wanted, none still stopping.

Failed: the rolling update paused (its failure action, or a failure during a rollback), or it was
rolled back automatically; tasks of the new spec failed `failures` times since the change (or once,
when the restart policy will not replace them); the service was changed again by someone else. A task
that no node can run is not a failure by itself (a node may come): the waiting loop gives up on it
after a while (warren.cli.waiting).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from warren.spec.taskstate import TERMINAL

# Update states (warren.reconciler.updates) of a rollout in progress, and of one that stopped on a failure.
_ROLLING = frozenset({"updating", "rollback_started"})
_PAUSED = "paused"
_ROLLBACKS = frozenset({"rollback_started", "rollback_completed"})
_FAILED_STATES = frozenset({"failed", "rejected"})
_PLACING = frozenset({"new", "pending"})

State = Literal["waiting", "converged", "failed"]
Kind = Literal["create", "update", "scale", "rollback"]  # the command that made the change


@dataclass(frozen=True, slots=True)
class Change:
    """The change waited for: the command that made it and the service as the write answered it."""

    kind: Kind
    name: str
    version: int  # the service's version after the write
    since: float  # when the write was applied (the manager's clock: the service's updated_at)


@dataclass(frozen=True, slots=True)
class Verdict:
    state: State
    summary: str  # one line: where the change stands (shown as progress)
    reason: str = ""  # why it failed, or why tasks cannot start yet (pending)
    pending: bool = False  # a task of the new spec waits for a node that can run it


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _float(value: object) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _ready(task: Mapping[str, Any]) -> bool:
    """Running, and healthy if checked (health "none": the spec has no check)."""
    return task.get("state") == "running" and task.get("health") in ("none", "healthy", None)


def _failure_limit(spec: Mapping[str, Any], failures: int) -> int:
    """How many failures of new tasks mean the change will not converge by itself: `failures`, or fewer
    when the restart policy stops replacing them sooner."""
    restart = _mapping(spec.get("restart"))
    if restart.get("condition") == "none":
        return 1
    attempts = _int(restart.get("max_attempts"))
    return min(failures, attempts + 1) if attempts > 0 else failures


def _describe(task: Mapping[str, Any]) -> str:
    message = " ".join(str(task.get("message") or "").split())
    name = task.get("name") or task.get("id")
    return f"task {name} {task.get('state')}" + (f": {message}" if message else "")


def assess(service: Mapping[str, Any], tasks: Sequence[Mapping[str, Any]], change: Change,
           failures: int) -> Verdict:
    """Where `change` stands, given the service and its tasks read now."""
    status = _mapping(service.get("update_status"))
    state, message = status.get("state"), " ".join(str(status.get("message") or "").split())
    if _int(service.get("version")) < change.version:  # read from a manager that has not applied it yet
        return Verdict("waiting", "waiting for the change to reach this manager")
    if _int(service.get("version")) != change.version:
        if change.kind != "rollback" and state in _ROLLBACKS and message.startswith("update failed"):
            return Verdict("failed", message, message)
        reason = (f"service {change.name} was changed again meanwhile (now version "
                  f"{service.get('version')}): no longer waiting for this change")
        return Verdict("failed", reason, reason)

    digest = service.get("spec_digest")
    spec = _mapping(service.get("spec"))
    tracking = bool(status) and status.get("spec_digest") == digest
    if tracking and state == _PAUSED:
        return Verdict("failed", message, message or "the rolling update paused")
    rolling = tracking and state in _ROLLING

    global_ = spec.get("mode") == "global"

    def current(task: Mapping[str, Any]) -> bool:
        # The mode is no task field (a switch keeps the digest): a task of the other mode, with a slot
        # in global mode or without one in replicated mode, is replaced all the same.
        return task.get("spec_digest") == digest and (task.get("slot") is None) == global_

    wanted = [t for t in tasks if t.get("desired_state") == "running" and t.get("state") not in TERMINAL]
    new = [t for t in wanted if current(t)]
    old = [t for t in wanted if not current(t)]
    stopping = [t for t in tasks if t.get("desired_state") != "running" and t.get("state") not in TERMINAL]
    ready = sum(1 for t in new if _ready(t))
    desired = _int(service.get("replicas_desired"))

    failed = [t for t in tasks if current(t) and t.get("desired_state") == "running"
              and t.get("state") in _FAILED_STATES and _float(t.get("created_at")) >= change.since]
    if failed and len(failed) >= _failure_limit(spec, failures):
        last = max(failed, key=lambda t: _float(t.get("updated_at")))
        count = "" if len(failed) == 1 else f" ({len(failed)} failures)"
        reason = f"{_describe(last)}{count}"
        return Verdict("failed", reason, reason)

    # Running: as `service ls` counts them (either spec); the update's step: those of the new spec.
    running = sum(1 for t in wanted if t.get("state") == "running")
    parts = [f"{running}/{desired} running"]
    if global_:
        parts[0] += " (global)"
    if rolling or old:
        parts.append(f"{'rollback' if state == 'rollback_started' else 'update'}: "
                     f"{ready} of {max(desired, ready + len(old))} on the new spec")
    starting = [t for t in new if not _ready(t) and t.get("state") not in _PLACING]
    if starting:
        unhealthy = sum(1 for t in starting if t.get("health") == "unhealthy")
        parts.append(f"{len(starting)} starting" + (f" ({unhealthy} unhealthy)" if unhealthy else ""))
    if stopping:
        parts.append(f"{len(stopping)} stopping")
    if failed:
        parts.append(f"{len(failed)} failed")
    placing = [t for t in new if t.get("state") in _PLACING]
    reason = ""
    if placing:
        first = placing[0]
        why = " ".join(str(first.get("message") or "").split())
        reason = f"no node can run {first.get('name') or 'it'}: {why}" if why else ""
        parts.append(f"{len(placing)} pending" + (f": {why}" if why else ""))
    summary = ", ".join(parts)

    if not rolling and not old and not stopping and ready == desired == len(new) and not placing:
        if desired or not global_ or change.kind != "create":
            return Verdict("converged", summary)
        # A new global service with no task yet: not placed yet, or no node is eligible.
        return Verdict("waiting", f"{summary}, no task yet", "no node runs it yet", pending=True)
    return Verdict("waiting", summary, reason, pending=bool(placing))
