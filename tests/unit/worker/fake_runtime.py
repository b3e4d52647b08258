"""FakeRuntime: the ContainerRuntime protocol in memory, for unit tests of whatever drives a runtime.

Containers are records; "running" is a flag. Tests make things happen with `crash(container_id,
status)` (an exit event, as the engine's event stream would deliver it) and inspect `starts`,
`stops`, `removed` and `containers`. `fail_start[image] = "reason"` makes starts of an image fail
with RuntimeStartError; `exec_status` decides what health-check commands return.
"""

from __future__ import annotations

import asyncio
import builtins
import itertools
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field

from warren.runtime.base import (
    LABEL_CLUSTER,
    LABEL_NODE,
    LABEL_SERVICE,
    LABEL_SLOT,
    LABEL_TASK,
    Exit,
    Instance,
    PortMapping,
    RuntimeStartError,
    RuntimeUnavailableError,
    TaskRun,
    VolumeBusyError,
)


@dataclass
class FakeContainer:
    container_id: str
    task_id: str
    run: TaskRun | None
    running: bool = True
    exit_code: int | None = None
    started_at: float = field(default_factory=time.time)
    labels: dict[str, str] = field(default_factory=dict)
    output: bytes = b""


class FakeRuntime:
    """In-memory `ContainerRuntime`. `driver` is "docker" unless told otherwise."""

    _ids = itertools.count(1)

    def __init__(self, driver: str = "docker", *, cluster_id: str = "cluster-test", node: str = "") -> None:
        self.driver = driver
        self.cluster_id = cluster_id
        self.node = node
        self.containers: dict[str, FakeContainer] = {}
        self.starts: list[TaskRun] = []
        self.stops: list[str] = []
        self.stop_timeouts: dict[str, float] = {}  # container ID -> the timeout its stop was given
        self.removed: list[str] = []
        self.fail_start: dict[str, str] = {}
        # (container ID, command) -> exit status of a health-check command; default 0.
        self.exec_status: Callable[[str, list[str]], int] = lambda cid, cmd: 0
        self.execs: list[tuple[str, list[str]]] = []
        self.ip = "127.0.0.1"
        self.unavailable = False
        self.closed = False
        # Volume names this runtime holds (made by a start that mounts one); names whose removal fails.
        self.volume_names: set[str] = set()
        self.busy_volumes: set[str] = set()
        self.version_text: str | None = None
        # (container ID, target port) -> the host port `ingress_ports` reports for it.
        self.host_ports: dict[tuple[str, int], int] = {}
        self._exits: asyncio.Queue[Exit] = asyncio.Queue()

    # -- test helpers -----------------------------------------------------------------------------

    def add(
        self, task_id: str, *, running: bool = True, exit_code: int | None = None, output: bytes = b""
    ) -> str:
        """A container left by an earlier run of the worker (for adoption tests)."""
        cid = f"{self.driver}-{next(self._ids):04d}"
        self.containers[cid] = FakeContainer(
            cid,
            task_id,
            None,
            running=running,
            exit_code=exit_code,
            labels=self._labels(task_id, "", None),
            output=output,
        )
        return cid

    def crash(self, container_id: str, exit_code: int | None = 1, message: str = "") -> None:
        """The container's process ends by itself."""
        c = self.containers[container_id]
        c.running = False
        c.exit_code = exit_code
        self._exits.put_nowait(Exit(c.task_id, container_id, exit_code, message))

    def running(self, task_id: str | None = None) -> builtins.list[FakeContainer]:
        return [
            c for c in self.containers.values() if c.running and (task_id is None or c.task_id == task_id)
        ]

    def starts_of(self, task_id: str) -> int:
        return sum(1 for run in self.starts if run.task_id == task_id)

    def _labels(self, task_id: str, service_id: str, slot: int | None) -> dict[str, str]:
        labels = {
            LABEL_CLUSTER: self.cluster_id,
            LABEL_NODE: self.node,
            LABEL_TASK: task_id,
            LABEL_SERVICE: service_id,
        }
        if slot is not None:
            labels[LABEL_SLOT] = str(slot)
        return labels

    def _check(self) -> None:
        if self.unavailable:
            raise RuntimeUnavailableError(f"the fake {self.driver} engine does not answer")

    # -- the protocol -----------------------------------------------------------------------------

    async def start(self, run: TaskRun) -> str:
        self._check()
        self.starts.append(run)
        reason = self.fail_start.get(run.image)
        if reason is not None:
            raise RuntimeStartError(reason)
        self.volume_names.update(m.source for m in run.mounts if m.type == "volume" and m.source)
        cid = f"{self.driver}-{next(self._ids):04d}"
        self.containers[cid] = FakeContainer(
            cid, run.task_id, run, labels=self._labels(run.task_id, run.service_id, run.slot)
        )
        return cid

    async def stop(self, container_id: str, timeout_s: float) -> None:
        self._check()
        self.stops.append(container_id)
        self.stop_timeouts[container_id] = timeout_s
        c = self.containers.get(container_id)
        if c is not None and c.running:
            c.running = False
            c.exit_code = 143
            self._exits.put_nowait(Exit(c.task_id, container_id, 143))  # as the engine reports a stop

    async def remove(self, container_id: str) -> None:
        self._check()
        if self.containers.pop(container_id, None) is not None:
            self.removed.append(container_id)

    async def list(self) -> builtins.list[Instance]:
        self._check()
        return [
            Instance(c.task_id, c.container_id, c.running, c.exit_code, c.started_at, dict(c.labels))
            for c in self.containers.values()
        ]

    async def exits(self) -> AsyncIterator[Exit]:
        while not self.closed:
            yield await self._exits.get()

    async def logs(self, container_id: str, *, follow: bool, tail: int | None) -> AsyncIterator[bytes]:
        c = self.containers.get(container_id)
        data = c.output if c is not None else b""
        if tail is not None:
            data = b"".join(data.splitlines(keepends=True)[-tail:]) if tail else b""
        for start in range(0, len(data), 10_000):  # pieces smaller than a chunk, as a stream gives them
            yield data[start : start + 10_000]

    async def exec(self, container_id: str, cmd: builtins.list[str], timeout_s: float) -> int:
        self._check()
        self.execs.append((container_id, cmd))
        return self.exec_status(container_id, cmd)

    async def address(self, container_id: str) -> str:
        return self.ip

    async def ingress_ports(self, container_id: str, publish: Sequence[PortMapping]) -> dict[int, int]:
        """As an engine that picks host ports: `host_ports[(container ID, target)]`, else target + 30000."""
        self._check()
        if container_id not in self.containers:
            return {}
        return {
            p.host: self.host_ports.get((container_id, p.container), p.container + 30000)
            for p in publish if p.ingress
        }

    async def volumes(self) -> builtins.list[str]:
        if self.unavailable:
            raise RuntimeUnavailableError("the fake engine is down")
        return sorted(self.volume_names)

    async def remove_volume(self, name: str) -> None:
        if name in self.busy_volumes:
            raise VolumeBusyError(f"volume {name} is in use")
        self.volume_names.discard(name)

    async def close(self) -> None:
        self.closed = True

    async def version(self) -> str:
        return self.version_text or ""
