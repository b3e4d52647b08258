"""Rolling updates: replacing the tasks of an older spec, a batch at a time.

A task whose spec_digest differs from its service's is outdated. While any is left, the service's
update status (services.update_status, written with SetUpdateStatus) tracks the spec it rolls out
(`spec_digest`) and when the rollout started (`started_at`); every step is derived again from the
state on each pass, so a new leader continues where the last one stopped.

- A batch is at most `update.parallelism` units. The next batch starts when no unit is busy, and
  `update.delay_s` after the last new task became stable (running for `update.monitor_s`, and healthy
  if the spec has a health check).
- stop-first: the old task is asked to stop; its unit gets the new one once it is final (restart
  rules: a task asked to stop is replaced at once). start-first: the new task is created beside the
  old one, which is asked to stop once the new one runs (and is healthy); if the new one cannot be
  placed, the unit falls back to stop-first rather than wait forever.
- A new task of the update that fails pauses the update (`paused`, until the spec changes again) or
  rolls the service back (`rollback_started`: RollbackService, then the old spec is rolled out the
  same way, `rollback_completed`). A failure during a rollback pauses it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from warren.reconciler.actions import Actions
from warren.reconciler.state import Service, Task
from warren.reconciler.units import Unit
from warren.spec import taskstate
from warren.spec.service import spec_digest

UPDATING = "updating"
PAUSED = "paused"
COMPLETED = "completed"
ROLLBACK_STARTED = "rollback_started"
ROLLBACK_COMPLETED = "rollback_completed"


@dataclass(frozen=True, slots=True)
class Rollout:
    """An update (or rollback) in progress: its status state and when it started."""

    state: str
    started_at: float


# What `check` answers when it rolled the service back in this pass.
ROLLED_BACK: Final = Rollout(ROLLBACK_STARTED, math.inf)


def check(acts: Actions, service: Service, units: list[Unit]) -> Rollout | None:
    """The rollout in progress (starting one if tasks are outdated and none is tracked), None if
    there is none to advance (nothing outdated, or paused), or ROLLED_BACK when a failure makes this
    pass roll the service back: its spec is about to change, so nothing else is decided for it."""
    status = service.update_status or {}
    # A status without a digest (written by someone else) is taken to be about the current spec.
    tracking = bool(status) and status.get("spec_digest", service.digest) == service.digest
    state = status.get("state") if tracking else None
    if state == PAUSED:
        return None
    if state in (UPDATING, ROLLBACK_STARTED):
        rollout = Rollout(str(state), float(status.get("started_at") or 0.0))
        failure = _failure(service, rollout.started_at)
        return rollout if failure is None else _fail(acts, service, rollout, failure)
    if not any(u.outdated(service.digest) for u in units):
        return None
    acts.update_status(service, _status(service, UPDATING, "update in progress", acts.now))
    return Rollout(UPDATING, acts.now)


def advance(
    acts: Actions, service: Service, units: list[Unit], rollout: Rollout, fill: Callable[[Unit], None]
) -> None:
    """Start the next batch if it is due (`fill` gives a unit whose old task just stopped its new
    one), or report the rollout complete once nothing is outdated or settling."""
    if _advance(acts, service, units, rollout.started_at, fill):
        done = ROLLBACK_COMPLETED if rollout.state == ROLLBACK_STARTED else COMPLETED
        message = "rollback completed" if rollout.state == ROLLBACK_STARTED else "update completed"
        acts.update_status(
            service, _status(service, done, message, rollout.started_at, completed_at=acts.now)
        )


def ready(service: Service, task: Task) -> bool:
    """Running, and healthy if the spec has a health check: an old task may now make way."""
    if task.state != taskstate.RUNNING:
        return False
    return service.task_spec.health is None or task.health == "healthy"


def _advance(
    acts: Actions, service: Service, units: list[Unit], started_at: float, fill: Callable[[Unit], None]
) -> bool:
    """Start the next batch if it is due; True once nothing is outdated or settling."""
    policy = service.spec.update
    monitor, delay, start_first = policy.monitor_s, policy.delay_s, policy.order == "start-first"
    digest = service.digest
    busy = 0
    waiting: list[Unit] = []
    last_stable: float | None = None
    for unit in units:
        new = unit.live_current(digest)
        old = unit.live_outdated(digest)
        settling = False
        if new is not None and new.created_at >= started_at:
            stable_at = (
                new.started_at + monitor if ready(service, new) and new.started_at is not None else None
            )
            if stable_at is None or stable_at > acts.now:
                settling = True
                if stable_at is not None:
                    acts.wake(stable_at)
            elif last_stable is None or stable_at > last_stable:
                last_stable = stable_at
        if settling or unit.stopping_outdated(digest) is not None or (old is not None and new is not None):
            busy += 1
        elif old is not None:
            waiting.append(unit)
    if busy or not waiting:
        return not busy and not waiting
    if last_stable is not None and acts.now < last_stable + delay:
        acts.wake(last_stable + delay)
        return False
    for unit in waiting[: policy.parallelism]:
        old = unit.live_outdated(digest)
        assert old is not None
        if start_first and acts.create(service, unit, must_place=True) is not None:
            continue
        acts.shut_down(old, "rolling update")
        fill(unit)  # an old task that was never placed is final at once: its unit can be filled now
    return False


def _failure(service: Service, started_at: float) -> Task | None:
    """The first task of the rolled-out spec, created by this rollout, that failed by itself."""
    for t in service.tasks:
        if (
            t.spec_digest == service.digest
            and t.created_at >= started_at
            and t.desired == "running"
            and t.state in (taskstate.FAILED, taskstate.REJECTED)
        ):
            return t
    return None


def _fail(acts: Actions, service: Service, rollout: Rollout, failure: Task) -> Rollout | None:
    what = f"task {failure.id} failed" + (f": {failure.message}" if failure.message else "")
    if (
        rollout.state == UPDATING
        and service.spec.update.failure_action == "rollback"
        and service.previous_spec is not None
    ):
        acts.rollback(service)
        target = _digest_after_rollback(service)
        acts.update_status(
            service,
            {
                "state": ROLLBACK_STARTED,
                "message": f"update failed ({what}); rolling back",
                "started_at": acts.now,
                "spec_digest": target,
            },
        )
        return ROLLED_BACK
    verb = "rollback" if rollout.state == ROLLBACK_STARTED else "update"
    acts.update_status(service, _status(service, PAUSED, f"{verb} paused: {what}", rollout.started_at))
    return None


def _digest_after_rollback(service: Service) -> str:
    # RollbackService restores every task field of the previous spec, so the result has its digest.
    assert service.previous_spec is not None
    return spec_digest(service.previous_spec)


def _status(service: Service, state: str, message: str, started_at: float, **extra: Any) -> dict[str, Any]:
    return {
        "state": state,
        "message": message,
        "started_at": started_at,
        "spec_digest": service.digest,
        **extra,
    }
