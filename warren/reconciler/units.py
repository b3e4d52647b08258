"""A unit is what a service keeps exactly one running task for: a slot (replicated mode) or a node
(global mode). Restarts, rolling updates and history all work unit by unit."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from warren.reconciler.state import Service, Task
from warren.spec import taskstate

if TYPE_CHECKING:
    from warren.reconciler.actions import Actions


@dataclass(slots=True)
class Unit:
    slot: int | None  # replicated mode
    node: str | None  # global mode: every task of the unit runs there
    tasks: list[Task] = field(default_factory=list)  # in creation order

    @property
    def label(self) -> str:
        return f"slot {self.slot}" if self.slot is not None else f"node {self.node}"

    def live(self) -> list[Task]:
        return [t for t in self.tasks if t.live]

    def live_current(self, digest: str) -> Task | None:
        return next((t for t in self.tasks if t.live and t.spec_digest == digest), None)

    def live_outdated(self, digest: str) -> Task | None:
        return next((t for t in self.tasks if t.live and t.spec_digest != digest), None)

    def stopping_outdated(self, digest: str) -> Task | None:
        """An outdated task asked to stop that has not stopped yet (a stop-first update waits for it)."""
        return next(
            (t for t in self.tasks if not t.final and t.desired != "running" and t.spec_digest != digest),
            None,
        )

    def outdated(self, digest: str) -> bool:
        return self.live_outdated(digest) is not None or self.stopping_outdated(digest) is not None


@dataclass(slots=True)
class Units:
    """A service's units: `wanted` are those it should have a task in now, in order; `extra` hold
    only tasks being stopped and history (slots above the replica count, nodes no longer eligible)."""

    wanted: list[Unit] = field(default_factory=list)
    extra: list[Unit] = field(default_factory=list)

    def all(self) -> list[Unit]:
        return [*self.wanted, *self.extra]


def stop_duplicates(acts: Actions, service: Service, unit: Unit) -> None:
    """Leave a unit at most one live task of the current spec and one outdated one (the pair of a
    start-first update in progress). An outdated task that was never placed holds nothing worth
    keeping: it is stopped at once, and the unit gets a task of the current spec."""
    current: list[Task] = []
    outdated: list[Task] = []
    for t in unit.live():
        if t.spec_digest == service.digest:
            current.append(t)
        elif t.node is None:
            acts.shut_down(t, "replaced by a task of the updated spec")
        else:
            outdated.append(t)
    for group in (current, outdated):
        if len(group) > 1:
            keep = _best(group)
            for t in group:
                if t is not keep:
                    acts.shut_down(t, f"duplicate task in {unit.label}")


def _best(tasks: list[Task]) -> Task:
    """The task to keep among duplicates: the furthest along, then the oldest."""
    return max(tasks, key=lambda t: (taskstate.RANK[t.state], t.node is not None, -t.created_at))
