"""One reconcile pass: from the replicated state to the commands that move it towards every service's
spec. Pure apart from reading the state: the leader's loop proposes the commands, and calls again
when the state changes or at `wake_at`.

A pass, in order:
1. tasks on a node that is down or gone are asked to stop, and failed by the next pass (they are
   replaced at once, below); tasks on drained nodes are asked to stop; a task asked to stop that was
   never placed is written `shutdown` (no worker will);
2. each service's units (slots, or nodes in global mode) are formed; tasks that no unit wants
   (scale down, ineligible node, duplicates) are asked to stop;
3. pending tasks are placed again;
4. each service: a failed rolling update is paused or rolled back (warren.reconciler.updates); every
   unit without a live task gets one if its restart policy allows (warren.reconciler.restarts); then
   the update's next batch starts if it is due;
5. history beyond the limit is removed.

The same state gives the same plan (apart from new task IDs); a converged state gives no commands.
"""

from __future__ import annotations

import functools
import secrets
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass

from warren.config import OrchestratorSettings
from warren.reconciler import global_, history, replicated, restarts, updates
from warren.reconciler.actions import Actions, Plan
from warren.reconciler.state import Service, ServiceCache, State, load
from warren.reconciler.units import Unit, Units
from warren.spec import taskstate

__all__ = ["Plan", "Planner", "plan", "new_task_id"]


def new_task_id() -> str:
    return "t-" + secrets.token_hex(5)


def plan(
    conn: sqlite3.Connection,
    now: float,
    settings: OrchestratorSettings,
    new_id: Callable[[], str] = new_task_id,
    cache: ServiceCache | None = None,
) -> Plan:
    """The plan for the state `conn` holds now; `cache` (kept across passes by the caller) saves
    parsing the services that did not change since the last pass."""
    state = load(conn, cache)
    acts = Actions(state, now, settings, new_id)
    _lost_and_drained(acts, state)
    units: dict[str, Units] = {}
    for service in state.services:
        module = global_ if service.mode == "global" else replicated
        units[service.id] = module.units(acts, service)
    for service in state.services:
        for task in service.tasks:
            if task.live and task.node is None:
                acts.retry(service, task)
    for service in state.services:
        wanted = units[service.id].wanted
        rollout = updates.check(acts, service, wanted)
        if rollout is updates.ROLLED_BACK:
            continue
        for unit in wanted:
            _fill(acts, service, unit)
        if rollout is not None:
            updates.advance(acts, service, wanted, rollout, functools.partial(_fill, acts, service))
    for service in state.services:
        history.collect(acts, service, units[service.id].all())
    return acts.plan()


def _lost_and_drained(acts: Actions, state: State) -> None:
    for service in state.services:
        for task in service.tasks:
            if task.final:
                continue
            if task.node is None:
                if task.desired != "running":  # never placed and asked to stop: nothing to wait for
                    acts.finish(task, taskstate.SHUTDOWN, task.message)
                continue
            node = state.nodes.get(task.node)
            if node is None:
                acts.lose(task, f"node {task.node} was removed")
            elif node.state == "down":
                acts.lose(task, f"node {task.node} is down")
            elif node.availability == "drain" and task.desired == "running":
                acts.shut_down(task, "node drained")


def _fill(acts: Actions, service: Service, unit: Unit) -> None:
    """Give the unit its one live task, or finish a start-first replacement."""
    digest = service.digest
    new = unit.live_current(digest)
    old = unit.live_outdated(digest)
    if new is not None or old is not None:
        if new is not None and old is not None and updates.ready(service, new):
            acts.shut_down(old, f"replaced by task {new.id}")
        return
    if unit.stopping_outdated(digest) is not None:
        return  # stop-first: the new task comes once the old one has stopped
    due = restarts.replacement_due(unit.tasks, service, acts.settings)
    if due is None:
        return
    if due > acts.now:
        acts.wake(due)
        return
    acts.create(service, unit)


class Planner:
    """The leader's planner for one term: `plan`, working only on what changed since its last pass.

    It keeps a ServiceCache across passes (each service's spec decoded once per change), and it
    remembers its last pass: when the state is the one that pass read (same connection, and no row
    written through it since: `Connection.total_changes`, which every applied batch moves since apply
    always writes the applied index), that pass planned nothing, and its `wake_at` has not come, the
    plan is again nothing, with the same `wake_at`, and the state is not read at all. That holds because
    a pass is a function of the state and `now`, and every decision that depends on `now` is a
    comparison with a time that, when still in the future, the pass reports through `wake_at` (restart
    delays and backoff, an update's monitor and delay). Any other pass is a full `plan`.
    """

    def __init__(self) -> None:
        self.cache = ServiceCache()
        self._idle: _Idle | None = None

    def __call__(
        self,
        conn: sqlite3.Connection,
        now: float,
        settings: OrchestratorSettings,
        new_id: Callable[[], str] = new_task_id,
    ) -> Plan:
        idle = self._idle
        if idle is not None and idle.holds(conn, now, settings):
            return Plan([], idle.wake_at)
        self._idle = None
        changes = conn.total_changes
        result = plan(conn, now, settings, new_id, self.cache)
        if not result.commands:
            self._idle = _Idle(conn, changes, now, settings, result.wake_at)
        return result


@dataclass(frozen=True, slots=True)
class _Idle:
    """A pass that planned nothing: the state it read (by connection and write count) and its time."""

    conn: sqlite3.Connection
    changes: int
    now: float
    settings: OrchestratorSettings
    wake_at: float | None

    def holds(self, conn: sqlite3.Connection, now: float, settings: OrchestratorSettings) -> bool:
        """Would a pass of `conn` at `now` plan the same nothing? (A clock that went back replans.)"""
        return (
            conn is self.conn
            and conn.total_changes == self.changes
            and settings == self.settings
            and self.now <= now
            and (self.wake_at is None or now < self.wake_at)
        )
