"""What one planning pass decides, kept as commands and mirrored into the pass's own picture.

Every decision goes through `Actions`: it records the command and updates the in-memory tasks the
way the command will (or, for a two-step change, the way the next pass will), so later steps of the
same pass build on it: a task lost with its node is replaced in the same pass.

The leader proposes a plan's commands all at once, so they may commit in any order: no command of a
plan depends on another one of the same plan. Where a change needs two steps on one task (asked to
stop, then final: a task lost with its node, or one that was never placed), the pass asks it to stop
and a later pass, seeing it asked, writes its final state.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from warren.config import OrchestratorSettings
from warren.reconciler.state import Service, State, Task
from warren.reconciler.units import Unit
from warren.scheduler.placement import Placer
from warren.spec import taskstate
from warren.store import commands as c

# A task command carries at most this many items, so that one command stays well below the Raft entry
# limit (RaftSettings.max_entry_bytes, 1 MiB) even with large specs.
MAX_ITEMS_PER_COMMAND = 200

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Plan:
    """The commands to propose now, in order, and the earliest time (epoch seconds) at which a
    delayed action becomes due (a restart delay, an update's delay or monitor), if any."""

    commands: list[c.Command]
    wake_at: float | None


class Actions:
    def __init__(
        self, state: State, now: float, settings: OrchestratorSettings, new_id: Callable[[], str]
    ) -> None:
        self.state = state
        self.now = now
        self.settings = settings
        self.new_id = new_id
        self.placer = Placer(state.candidates())
        self._desired: dict[str, list[str]] = {}  # message -> task ids asked to stop
        self._statuses: list[c.TaskStatus] = []
        self._rollbacks: list[c.RollbackService] = []
        self._created: list[c.NewTask] = []
        self._assignments: list[c.Assignment] = []
        self._removed: list[str] = []
        self._update_statuses: list[c.SetUpdateStatus] = []
        self._wake: float | None = None

    # -- tasks ---------------------------------------------------------------------------------------

    def lose(self, task: Task, message: str) -> None:
        """A task whose node is down or gone: asked to stop now (so it is replaced at once, without
        waiting for its restart policy), failed by the next pass."""
        if task.desired == "running":
            self._ask_to_stop(task, message)
        else:
            self.finish(task, taskstate.FAILED, message)
        # Replaced as if already failed: it will never run again.
        task.state = taskstate.FAILED
        task.message = message
        task.updated_at = self.now

    def shut_down(self, task: Task, message: str) -> None:
        """Ask a task to stop. One that was never placed has no worker to stop it: the next pass
        writes it final, and this one already treats it as such."""
        self._ask_to_stop(task, message)
        if task.node is None:
            task.state = taskstate.SHUTDOWN
            task.updated_at = self.now

    def finish(self, task: Task, state: str, message: str) -> None:
        """Write the final state of a task that was asked to stop and has no worker to report it."""
        self._statuses.append(c.TaskStatus(task.id, state, message, self.now))
        task.state = state
        task.message = message
        task.updated_at = self.now

    def _ask_to_stop(self, task: Task, message: str) -> None:
        self._desired.setdefault(message, []).append(task.id)
        task.desired = "shutdown"
        task.message = message
        task.updated_at = self.now

    def create(self, service: Service, unit: Unit, *, must_place: bool = False) -> Task | None:
        """A new task of the service's current spec in `unit`, placed now if a node fits (global mode:
        the unit's node), else pending with the reason. With `must_place` (or in global mode), nothing
        is created unless it can be placed."""
        previous = _previous_node(service, unit.tasks, unit.slot)
        placement = self.placer.place(service.request(unit.node, previous))
        if placement.node is None and (must_place or unit.node is not None):
            return None
        task_id = self.new_id()
        state: Literal["assigned", "pending"] = "assigned" if placement.node is not None else "pending"
        self._created.append(
            c.NewTask(
                task_id=task_id,
                service_id=service.id,
                slot=unit.slot,
                node=placement.node,
                state=state,
                message=placement.reason,
                spec=service.task_spec,
                spec_digest=service.digest,
            )
        )
        task = Task(
            id=task_id,
            service_id=service.id,
            slot=unit.slot,
            node=placement.node,
            desired="running",
            state=state,
            message=placement.reason,
            spec_digest=service.digest,
            exit_code=None,
            health="none",
            started_at=None,
            created_at=self.now,
            updated_at=self.now,
        )
        unit.tasks.append(task)
        service.tasks.append(task)
        return task

    def retry(self, service: Service, task: Task) -> None:
        """Try again to place a pending task; its reason is rewritten only if it changed, so an idle
        cluster proposes nothing."""
        previous = _previous_node(service, service.tasks, task.slot, task)
        placement = self.placer.place(service.request(None, previous))
        if placement.node is not None:
            self._assignments.append(c.Assignment(task.id, placement.node, ""))
            task.node, task.state, task.message = placement.node, taskstate.ASSIGNED, ""
        elif placement.reason != task.message:
            self._assignments.append(c.Assignment(task.id, None, placement.reason))
            task.message = placement.reason

    def remove(self, tasks: list[Task]) -> None:
        self._removed.extend(t.id for t in tasks)

    # -- services ------------------------------------------------------------------------------------

    def update_status(self, service: Service, status: dict[str, Any]) -> None:
        self._update_statuses.append(c.SetUpdateStatus(service.name, status, self.now))
        service.update_status = status

    def rollback(self, service: Service) -> None:
        self._rollbacks.append(c.RollbackService(service.name, self.now, service.version))

    # -- timing --------------------------------------------------------------------------------------

    def wake(self, at: float) -> None:
        """Something becomes due at `at` (only future times matter: what is due now is done now)."""
        if at > self.now and (self._wake is None or at < self._wake):
            self._wake = at

    # -- result --------------------------------------------------------------------------------------

    def plan(self) -> Plan:
        # Grouped by kind in a fixed order (for readable logs and stable tests), not for correctness.
        cmds: list[c.Command] = []
        for message, ids in self._desired.items():
            cmds.extend(c.SetTasksDesired(chunk, "shutdown", message, self.now) for chunk in _chunks(ids))
        cmds.extend(c.SetTaskStatuses(chunk) for chunk in _chunks(self._statuses))
        cmds.extend(self._rollbacks)
        cmds.extend(c.CreateTasks(chunk, self.now) for chunk in _chunks(self._created))
        cmds.extend(c.AssignTasks(chunk, self.now) for chunk in _chunks(self._assignments))
        cmds.extend(c.RemoveTasks(chunk) for chunk in _chunks(self._removed))
        cmds.extend(self._update_statuses)
        return Plan(cmds, self._wake)


def _previous_node(
    service: Service, tasks: list[Task], slot: int | None, before: Task | None = None
) -> str | None:
    """For a service that mounts volumes: the node of the latest task of `slot` in `tasks` (creation
    order) that was placed, created before `before` if given; where its volumes are (sticky placement)."""
    if slot is None or not service.needs.volumes:
        return None
    found = None
    for t in tasks:
        if t is before:
            break
        if t.slot == slot and t.node is not None:
            found = t.node
    return found


def _chunks(items: list[T]) -> list[list[T]]:
    return [items[i : i + MAX_ITEMS_PER_COMMAND] for i in range(0, len(items), MAX_ITEMS_PER_COMMAND)]
