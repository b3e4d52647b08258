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
        self._gone: dict[str, None] = {}

    def __bool__(self) -> bool:
        return bool(self._by_id)

    def __len__(self) -> int:
        return len(self._by_id)

    def get(self, container_id: str) -> Container | None:
        return self._by_id.get(container_id)

    def put(self, container: Container) -> None:
        self._by_id[container.container_id] = container

    def started(self, container: Container) -> None:
        """A container this worker just started (its exit may have been seen already: a command that
        ends at once, so an entry already there is kept)."""
        self._gone.pop(container.container_id, None)
        self._by_id.setdefault(container.container_id, container)

    def of_task(self, task_id: str) -> list[Container]:
        return [c for c in self._by_id.values() if c.task_id == task_id]

    def task_ids(self) -> set[str]:
        return {c.task_id for c in self._by_id.values()}

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
        self._by_id.pop(container_id, None)
