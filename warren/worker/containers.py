"""This worker's containers as it last saw them (listed at start, started by it, or reported by an exit
event), and the IDs of those it removed itself, so a late exit event for one is not taken for a new
exit."""

from __future__ import annotations

from dataclasses import dataclass

# Container IDs this worker removed, remembered (oldest forgotten first); entries.
_GONE_KEEP = 4096


@dataclass(slots=True)
class Container:
    """One of this worker's containers as the worker last saw it."""

    task_id: str
    container_id: str
    driver: str
    running: bool
    exit_code: int | None = None
    message: str = ""


class Containers:
    def __init__(self) -> None:
        self._by_id: dict[str, Container] = {}
        # The same containers by task (task ID -> container ID -> container), so that a task's step
        # finds its own without a scan of every container (a worker with thousands of tasks looks
        # once per step of each).
        self._by_task: dict[str, dict[str, Container]] = {}
        self._gone: dict[str, None] = {}

    def __bool__(self) -> bool:
        return bool(self._by_id)

    def __len__(self) -> int:
        return len(self._by_id)

    def get(self, container_id: str) -> Container | None:
        return self._by_id.get(container_id)

    def put(self, container: Container) -> None:
        old = self._by_id.get(container.container_id)
        if old is not None and old.task_id != container.task_id:
            self.drop(container.container_id)
        self._by_id[container.container_id] = container
        self._by_task.setdefault(container.task_id, {})[container.container_id] = container

    def started(self, container: Container) -> None:
        """A container this worker just started (its exit may have been seen already: a command that
        ends at once, so an entry already there is kept)."""
        self._gone.pop(container.container_id, None)
        if container.container_id not in self._by_id:
            self.put(container)

    def of_task(self, task_id: str) -> list[Container]:
        """The task's containers, in the order they were first seen."""
        return list(self._by_task.get(task_id, {}).values())

    def task_ids(self) -> set[str]:
        return set(self._by_task)

    def running_count(self) -> int:
        return sum(1 for c in self._by_id.values() if c.running)

    def removed(self, container_id: str) -> bool:
        """Whether this worker stopped or removed the container itself (its exit is no news)."""
        return container_id in self._gone

    def forget(self, container_id: str) -> None:
        """The container is being stopped or removed by this worker: its exit event is no news."""
        self._gone[container_id] = None
        while len(self._gone) > _GONE_KEEP:
            del self._gone[next(iter(self._gone))]

    def drop(self, container_id: str) -> None:
        container = self._by_id.pop(container_id, None)
        if container is None:
            return
        of_task = self._by_task.get(container.task_id)
        if of_task is not None:
            of_task.pop(container_id, None)
            if not of_task:
                del self._by_task[container.task_id]
