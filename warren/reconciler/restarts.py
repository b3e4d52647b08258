"""When a unit whose task ended gets a new one: the service's restart policy, plus backoff.

- A task that ended because it was asked to (drain, rolling update, its node went down or was
  removed: desired state `shutdown`) is replaced at once, whatever the policy: it did not fail.
- Otherwise the policy decides: `any` always, `on-failure` only after a failure (failed or rejected
  state, or a non-zero exit code), `none` never. `max_attempts` (0: no limit) bounds the replacements
  of tasks of the current spec; a policy that says no leaves the unit empty until the spec changes.
- A replacement waits `restart.delay_s`, plus a backoff when the unit's tasks keep ending shortly
  after they started (OrchestratorSettings.restart_*), so a task that cannot start does not spin.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from warren.config import OrchestratorSettings
from warren.reconciler.state import Service, Task
from warren.spec import taskstate

# Tasks that ended by themselves and count as attempts towards max_attempts.
_ATTEMPTS = frozenset({taskstate.FAILED, taskstate.REJECTED, taskstate.COMPLETE})


def replacement_due(tasks: Sequence[Task], service: Service, settings: OrchestratorSettings) -> float | None:
    """The time from which the unit whose tasks (in creation order, none live) are `tasks` may get a
    new task: -inf for at once, None for never (until the spec changes)."""
    finals = [t for t in tasks if t.final]
    if not finals:
        return -math.inf
    last = finals[-1]
    if last.desired != "running":
        return -math.inf
    policy = service.spec.restart
    allowed = policy.condition == "any" or (policy.condition == "on-failure" and failed(last))
    if allowed and policy.max_attempts > 0:
        attempts = sum(
            1
            for t in finals
            if t.spec_digest == service.digest and t.desired == "running" and t.state in _ATTEMPTS
        )
        # The first task is not a replacement: `max_attempts` replacements after it.
        allowed = attempts <= policy.max_attempts
    if not allowed:
        # The policy gave up on the spec that ended; a new spec deserves a task.
        return -math.inf if last.spec_digest != service.digest else None
    return last.updated_at + policy.delay_s + backoff(finals, settings)


def failed(task: Task) -> bool:
    return task.state in (taskstate.FAILED, taskstate.REJECTED) or task.exit_code not in (None, 0)


def backoff(finals: Sequence[Task], settings: OrchestratorSettings) -> float:
    """Extra wait after the unit's latest tasks (newest last) each ended within restart_window_s of
    starting: none after the first such end, then restart_backoff_initial_s, doubled per further one,
    at most restart_backoff_max_s."""
    quick = 0
    for t in reversed(finals):
        if t.desired != "running":
            break
        began = t.started_at if t.started_at is not None else t.created_at
        if t.updated_at - began > settings.restart_window_s:
            break
        quick += 1
    if quick < 2:
        return 0.0
    doublings = min(quick - 2, 60)
    return float(min(settings.restart_backoff_initial_s * 2**doublings, settings.restart_backoff_max_s))
