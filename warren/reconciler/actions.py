"""What one planning pass decides, kept as commands and mirrored into the pass's own picture.

Every decision goes through `Actions`: it records the command and updates the in-memory tasks the
way applying that command will, so later steps of the same pass build on it (a task failed because
its node is down is replaced in the same pass). `plan()` turns the records into commands in an order
that applies cleanly: desired states before statuses (a final task's desired state can no longer
change), rollbacks before new tasks, status reports of updates last.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from warren.config import OrchestratorSettings
from warren.reconciler.state import Service, State, Task
from warren.reconciler.units import Unit
from warren.scheduler.placement import Placer
from warren.store import commands as c
from warren.store import taskstate

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

    def fail(self, task: Task, message: str) -> None:
        """A task that can no longer run where it is (its node is down or gone): asked to stop and
        failed at once, so it is replaced without waiting for its restart policy."""
        self._desired.setdefault(message, []).append(task.id)
        self._statuses.append(c.TaskStatus(task.id, taskstate.FAILED, message, self.now))
        task.desired = "shutdown"
        task.state = taskstate.FAILED
        task.message = message
        task.updated_at = self.now

    def shut_down(self, task: Task, message: str) -> None:
        """Ask a task to stop. One that was never placed has no worker to stop it: it is final now."""
        self._desired.setdefault(message, []).append(task.id)
        task.desired = "shutdown"
        task.message = message
        task.updated_at = self.now
        if task.node is None:
            self._statuses.append(c.TaskStatus(task.id, taskstate.SHUTDOWN, message, self.now))
            task.state = taskstate.SHUTDOWN

    def create(self, service: Service, unit: Unit, *, must_place: bool = False) -> Task | None:
        """A new task of the service's current spec in `unit`, placed now if a node fits (global mode:
        the unit's node), else pending with the reason. With `must_place` (or in global mode), nothing
        is created unless it can be placed."""
        placement = self.placer.place(service.request(unit.node))
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
        placement = self.placer.place(service.request())
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


def _chunks(items: list[T]) -> list[list[T]]:
    return [items[i : i + MAX_ITEMS_PER_COMMAND] for i in range(0, len(items), MAX_ITEMS_PER_COMMAND)]
