"""The `ContainerRuntime` protocol: what a worker needs from whatever runs its tasks.

Two implementations: `docker.DockerRuntime` (the Docker Engine, through the Docker SDK) and
`process.ProcessRuntime` (a task is a supervised local process). A worker may run both; a service's
`driver` picks one. Everything here is asyncio; blocking SDK calls run in threads.

A runtime only ever sees and touches its own worker's tasks: every container (or process) carries
the labels below, and `list` filters on the cluster and node labels, so several workers sharing one
Docker Engine (tests, benches) never adopt or stop each other's containers.
"""

from __future__ import annotations

import asyncio
import builtins
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from warren.errors import WarrenError
from warren.spec.container import ContainerOptions

# Labels on every container (docker) or in every task's state file (process).
LABEL_CLUSTER = "warren.cluster"
LABEL_NODE = "warren.node"
LABEL_SERVICE = "warren.service"  # service ID
LABEL_SERVICE_NAME = "warren.service.name"
LABEL_TASK = "warren.task"
LABEL_SLOT = "warren.slot"


class RuntimeStartError(WarrenError):
    """A task could not be started (image absent and not pullable, bad command, port taken...). The
    message becomes the failed task's message, so it must say what went wrong in a user's words."""


class RuntimeUnavailableError(WarrenError):
    """The runtime itself does not answer (Docker Engine down)."""


class VolumeBusyError(WarrenError):
    """A volume could not be removed (a container still uses it, or the engine refused)."""


# Labels of the Docker volumes a worker creates for its tasks' `--mount type=volume`: the volume's
# name and the node that made it (a worker lists and removes only its own).
LABEL_VOLUME = "io.warren.volume"
LABEL_VOLUME_NODE = "io.warren.node"


@dataclass(frozen=True, slots=True)
class PortMapping:
    """A published port of the spec: `host` (Docker's "published") reaches `container` ("target").

    Host mode: the runtime binds `host` on the node. Ingress (docs/networking.md): every worker's proxy
    listens on `host` and forwards to the task wherever it runs, so the runtime publishes `container`
    on a port of the node it picks itself (docker: an ephemeral one; process: the target, which the
    task binds itself); `ContainerRuntime.ingress_ports` says which, once the task runs.
    """

    host: int
    container: int
    protocol: str = "tcp"
    ingress: bool = False


@dataclass(frozen=True, slots=True)
class DeviceMapping:
    """A device of the node (`host`: its real path, symlinks resolved) at `container` in the task."""

    host: str
    container: str
    permissions: str = "rwm"


@dataclass(frozen=True, slots=True)
class MountPoint:
    """A mount of the spec as the worker hands it to a runtime: `type` "volume" (`source`: the volume's
    name), "bind" (`source`: the node's path, symlinks resolved and checked against --allow-bind) or
    "tmpfs" (`size` in bytes, None: the engine's default)."""

    type: Literal["volume", "bind", "tmpfs"]
    target: str
    source: str | None = None
    read_only: bool = False
    size: int | None = None


@dataclass(frozen=True, slots=True)
class ConfigFile:
    """A config's file on the node (`host`, written by the worker at the mode asked) and where the task
    finds it (`target`, an absolute path in a container)."""

    host: str
    target: str


@dataclass(frozen=True, slots=True)
class TaskRun:
    """Everything a runtime needs to start one task."""

    task_id: str
    service_id: str
    service_name: str
    slot: int | None
    image: str
    command: list[str] | None
    env: Mapping[str, str]
    publish: tuple[PortMapping, ...] = ()
    cpus: float | None = None  # CPU limit (docker: NanoCpus); not enforced by the process runtime
    memory: int | None = None  # memory limit, bytes (docker: Memory); process runtime: RLIMIT_AS
    stop_timeout_s: float = 10.0
    # The task's secrets directory on tmpfs (warren.worker.secrets), None if it uses no secret: docker
    # mounts it read-only at /run/secrets, a process gets it as $WARREN_SECRETS_DIR.
    secrets_dir: str | None = None
    # The spec's container options (warren.spec.container); its devices as the worker checked them.
    options: ContainerOptions = field(default_factory=ContainerOptions)
    devices: tuple[DeviceMapping, ...] = ()
    # The spec's mounts, in its order (warren.worker.taskspec.mount_points).
    mounts: tuple[MountPoint, ...] = ()
    # The task's configs (warren.worker.configs), None if it uses none: the directory holding their
    # files, named by config name (a process gets it as $WARREN_CONFIGS_DIR), and each file with its
    # target (docker bind-mounts each one read-only there).
    configs_dir: str | None = None
    config_files: tuple[ConfigFile, ...] = ()


def task_labels(cluster_id: str, node: str, run: TaskRun) -> dict[str, str]:
    """The labels of `run`'s container (or process) on this node; a global task has no slot label."""
    labels = {
        LABEL_CLUSTER: cluster_id,
        LABEL_NODE: node,
        LABEL_SERVICE: run.service_id,
        LABEL_SERVICE_NAME: run.service_name,
        LABEL_TASK: run.task_id,
    }
    if run.slot is not None:
        labels[LABEL_SLOT] = str(run.slot)
    return labels


@dataclass(frozen=True, slots=True)
class Instance:
    """One of this worker's containers (or processes) as the runtime sees it now."""

    task_id: str
    container_id: str
    running: bool
    exit_code: int | None = None
    started_at: float | None = None  # epoch seconds
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Exit:
    """A container (process) of this worker stopped; delivered by `exits()` as it happens."""

    task_id: str
    container_id: str
    exit_code: int | None  # None: unknown (e.g. an adopted process whose status nobody could reap)
    message: str = ""


class ExitQueue:
    """The exits a runtime has seen, waiting for its `exits()` consumer; `close` ends every stream."""

    def __init__(self) -> None:
        self._queue: asyncio.Queue[Exit | None] = asyncio.Queue()

    def put(self, exit: Exit) -> None:
        self._queue.put_nowait(exit)

    def close(self) -> None:
        self._queue.put_nowait(None)

    async def stream(self) -> AsyncIterator[Exit]:
        while (item := await self._queue.get()) is not None:
            yield item
        self._queue.put_nowait(None)  # for any other waiting consumer


class ContainerRuntime(Protocol):
    driver: str  # "docker" | "process": the service spec's `driver` this runtime serves

    async def start(self, run: TaskRun) -> str:
        """Create and start the task's container; its ID. Raises RuntimeStartError with a reason."""
        ...

    async def stop(self, container_id: str, timeout_s: float) -> None:
        """SIGTERM, then SIGKILL after timeout_s. Stopping a stopped or unknown container is no error."""
        ...

    async def remove(self, container_id: str) -> None:
        """Remove a stopped container (and its files). Removing an unknown one is no error."""
        ...

    async def list(self) -> list[Instance]:
        """This worker's containers, running or stopped (for adoption after a restart)."""
        ...

    def exits(self) -> AsyncIterator[Exit]:
        """Exits of this worker's containers, as they happen (the engine's event stream, or the
        process's own exit), for as long as the runtime is open."""
        ...

    def logs(self, container_id: str, *, follow: bool, tail: int | None) -> AsyncIterator[bytes]:
        """The task's output (stdout and stderr, interleaved as written), then more as it comes if
        `follow`, until the container stops."""
        ...

    # builtins.list: inside this class `list` is the method above.
    async def exec(self, container_id: str, cmd: builtins.list[str], timeout_s: float) -> int:
        """Run `cmd` inside the task (health checks); its exit status, or -1 on timeout."""
        ...

    async def address(self, container_id: str) -> str:
        """The IP address at which the task's own ports answer (health checks over HTTP and TCP)."""
        ...

    async def ingress_ports(self, container_id: str, publish: Sequence[PortMapping]) -> dict[int, int]:
        """Where the node reaches each ingress mapping of `publish` (the mappings the task was started
        with): published port -> the node's port (1..65535), read once the task runs. A mapping the
        runtime cannot find a port for (the container already gone) is left out, never guessed."""
        ...

    async def volumes(self) -> builtins.list[str]:
        """The names of the volumes this worker made for its tasks with this runtime (a Docker volume
        labelled with this node; a directory of the process runtime's volumes dir)."""
        ...

    async def remove_volume(self, name: str) -> None:
        """Remove volume `name` of this worker and its data (an unknown one, or another node's, is no
        error); VolumeBusyError if it cannot be removed now."""
        ...

    async def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class NodeResources:
    """What a worker offers: detected at start and reported on registration."""

    cpus: float
    memory: int  # bytes
    drivers: tuple[str, ...]
    hostname: str
    # Host access the worker allows (WorkerSettings.allow_privileged, allow_devices, allow_binds).
    allow_privileged: bool = False
    allow_devices: tuple[str, ...] = ()
    allow_binds: tuple[str, ...] = ()

    def to_doc(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "cpus": self.cpus,
            "memory": self.memory,
            "drivers": list(self.drivers),
            "hostname": self.hostname,
        }
        # Only when allowed: a manager of an earlier version refuses fields it does not know.
        if self.allow_privileged:
            doc["allow_privileged"] = True
        if self.allow_devices:
            doc["allow_devices"] = list(self.allow_devices)
        if self.allow_binds:
            doc["allow_binds"] = list(self.allow_binds)
        return doc
