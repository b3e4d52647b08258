"""Which node a task runs on: a pipeline of filters, then spread.

Filters, in the order a rejected node is explained by (the first that refuses it):

    state (ready) -> availability (active) -> driver -> options the driver lacks -> constraints
    -> privileged allowed -> devices allowed -> bind mounts allowed -> host ports -> cpus -> memory

The first eight depend only on the node and the task's spec (`static_rejection`, also what decides a
global service's eligible nodes); the last three on the node's current load, which grows as a batch
is placed, so each task of a batch sees the ones placed before it. Among the nodes that pass, spread
picks the one with the fewest tasks of the same service, then the fewest tasks in all, then the
smallest name: the same input always gives the same placement.

A task that mounts named volumes is sticky (docs/volumes.md): it goes back to the node where its slot's
latest earlier task ran (`previous_node`) if that node still holds one of its volumes (of its driver),
and when that node cannot take it, its `volume_policy` decides: `wait` keeps it pending, saying which
node it waits for and why; `reschedule` places it like a new task. A task placed anywhere else prefers
a node that holds one of its volumes and no task of its service yet, then spreads as every task does.

A node's `cpus`/`memory` of None means "not reported": no limit in that dimension. A node that reports
no drivers runs nothing (a manager without a local worker) and is left out altogether. Host access is
what a worker was started to allow: privileged tasks (`--allow-privileged`) and devices under the paths
it names (`--allow-device`), bind mounts of paths under the roots it names (`--allow-bind`); a path
is matched as written (normalised by the spec), and the worker checks it again once its symlinks are
resolved.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

MIB = 1024 * 1024
GIB = 1024 * MIB

# Tolerance of the cpus sum (0.1 + 0.2 must fit in 0.3).
_CPU_EPSILON = 1e-9

_CONSTRAINT = re.compile(
    r"^node\.(labels\.(?P<label>[^=!\s]+)|(?P<field>name|role))\s*(?P<op>==|!=)\s*(?P<value>\S.*)$"
)


@dataclass(frozen=True, slots=True)
class TaskRequest:
    """What placement needs to know of one task (from its TaskSpec)."""

    service_id: str
    driver: str
    cpus: float = 0.0
    memory: int = 0  # bytes
    # (port, protocol) it holds on its node: host-mode publishes; a process task's ingress targets
    ports: tuple[tuple[int, str], ...] = ()
    constraints: tuple[str, ...] = ()
    # A global service's task belongs to one node: only that node is considered.
    node: str | None = None
    # What of its spec the process runtime cannot honour, named as the spec's fields
    # ("container.read_only", "mounts[0].read_only": a process task asking for one fits nowhere),
    # whether it runs privileged, the node's devices it is given and the node's paths it bind-mounts.
    unsupported: tuple[str, ...] = ()
    privileged: bool = False
    devices: tuple[str, ...] = ()
    binds: tuple[str, ...] = ()
    # Sticky placement: the named volumes it mounts, the node its slot's latest earlier task was
    # placed on (None: the slot has no history), and what it does when that node cannot take it
    # ("wait" or "reschedule").
    volumes: tuple[str, ...] = ()
    previous_node: str | None = None
    volume_policy: str = "wait"

    @property
    def static_key(self) -> tuple[object, ...]:
        """What the static filters look at: tasks with the same key are eligible on the same nodes."""
        return (self.driver, self.constraints, self.unsupported, self.privileged, self.devices, self.binds)


@dataclass(frozen=True, slots=True)
class NodeInfo:
    name: str
    role: str
    state: str
    availability: str
    labels: Mapping[str, str] = field(default_factory=dict)
    cpus: float | None = None
    memory: int | None = None  # bytes
    drivers: frozenset[str] = frozenset()
    allow_privileged: bool = False
    allow_devices: tuple[str, ...] = ()  # device paths (or directories of them) tasks may be given
    allow_binds: tuple[str, ...] = ()  # paths (and what is under them) tasks may bind-mount
    volumes: frozenset[tuple[str, str]] = frozenset()  # (name, driver) of the named volumes it holds


@dataclass(frozen=True, slots=True)
class NodeLoad:
    """What the tasks already on a node (every task not final) hold there."""

    cpus: float = 0.0
    memory: int = 0
    ports: frozenset[tuple[int, str]] = frozenset()
    # Tasks that should keep running there (spread counts them), in all and per service id.
    tasks: int = 0
    per_service: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Candidate:
    node: NodeInfo
    load: NodeLoad = NodeLoad()


@dataclass(frozen=True, slots=True)
class Placement:
    """`node` the task goes to, or None and `reason` (for `service ps`) why it fits nowhere."""

    node: str | None
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why a filter refused a node: `order` is the filter's place in the pipeline; `singular` and
    `plural` complete "1 node ..." and "3 nodes ..."."""

    order: int
    singular: str
    plural: str


# -- static filters ---------------------------------------------------------------------------------


def static_rejection(node: NodeInfo, task: TaskRequest) -> Rejection | None:
    """Why `node` can never run `task` now (whatever its load), or None if it can."""
    driver = task.driver
    if node.state != "ready":
        if node.state == "down":
            return Rejection(0, "is down", "are down")
        return Rejection(0, f"is not ready ({node.state})", f"are not ready ({node.state})")
    if node.availability == "drain":
        return Rejection(1, "is drained", "are drained")
    if node.availability != "active":
        return Rejection(1, f"is not active ({node.availability})", f"are not active ({node.availability})")
    if driver not in node.drivers:
        return Rejection(2, f"has no {driver} driver", f"have no {driver} driver")
    if driver == "process" and task.unsupported:
        text = f"{', '.join(task.unsupported)}: not supported by the process runtime"
        return Rejection(3, f"cannot apply {text}", f"cannot apply {text}")
    for constraint in task.constraints:
        if not matches(node, constraint):
            text = _compact(constraint)
            return Rejection(4, f"does not match {text}", f"do not match {text}")
    if task.privileged and not node.allow_privileged:
        text = "privileged tasks (worker start --allow-privileged)"
        return Rejection(5, f"does not allow {text}", f"do not allow {text}")
    for device in task.devices:
        if not _under(device, node.allow_devices):
            text = f"device {device} (worker start --allow-device)"
            return Rejection(6, f"does not allow {text}", f"do not allow {text}")
    for source in task.binds:
        if not _under(source, node.allow_binds):
            text = f"bind mount of {source} (worker start --allow-bind)"
            return Rejection(7, f"does not allow {text}", f"do not allow {text}")
    return None


def _under(path: str, roots: Sequence[str]) -> bool:
    """Whether `path` is one of `roots` or inside one of them (both normalised absolute paths)."""
    return any(path == root or path.startswith(root.rstrip("/") + "/") for root in roots)


def matches(node: NodeInfo, constraint: str) -> bool:
    """Whether `node` satisfies one constraint (models.Constraint syntax). A label the node lacks
    equals nothing, so `!=` matches it. A malformed constraint matches no node."""
    parsed = _parse(constraint)
    if parsed is None:
        return False
    label, fieldname, op, value = parsed
    if label is not None:
        actual = node.labels.get(label)
        have = None if actual is None else str(actual)
    else:
        have = node.name if fieldname == "name" else node.role
    return (have == value) if op == "==" else (have != value)


@functools.lru_cache(maxsize=1024)
def _parse(constraint: str) -> tuple[str | None, str | None, str, str] | None:
    m = _CONSTRAINT.match(constraint.strip())
    if m is None:
        return None
    return m.group("label"), m.group("field"), m.group("op"), m.group("value").strip()


def _compact(constraint: str) -> str:
    parsed = _parse(constraint)
    if parsed is None:
        return constraint
    label, fieldname, op, value = parsed
    return f"node.{'labels.' + label if label is not None else fieldname}{op}{value}"


# -- load filters ------------------------------------------------------------------------------------


class _Load:
    """A node's load while a batch is placed (a private, growing copy of its NodeLoad)."""

    __slots__ = ("cpus", "memory", "ports", "tasks", "per_service")

    def __init__(self, load: NodeLoad) -> None:
        self.cpus = load.cpus
        self.memory = load.memory
        self.ports = set(load.ports)
        self.tasks = load.tasks
        self.per_service = dict(load.per_service)

    def add(self, task: TaskRequest) -> None:
        self.cpus += task.cpus
        self.memory += task.memory
        self.ports.update(task.ports)
        self.tasks += 1
        self.per_service[task.service_id] = self.per_service.get(task.service_id, 0) + 1


def _load_rejection(node: NodeInfo, load: _Load, task: TaskRequest) -> Rejection | None:
    for port in task.ports:
        if port in load.ports:
            text = f"host port {port[0]}/{port[1]}"
            return Rejection(8, f"already uses {text}", f"already use {text}")
    if task.cpus and node.cpus is not None and load.cpus + task.cpus > node.cpus + _CPU_EPSILON:
        text = f"{_number(task.cpus)} free {'CPU' if task.cpus == 1 else 'CPUs'}"
        return Rejection(9, f"lacks {text}", f"lack {text}")
    if task.memory and node.memory is not None and load.memory + task.memory > node.memory:
        text = f"{format_bytes(task.memory)} of free memory"
        return Rejection(10, f"lacks {text}", f"lack {text}")
    return None


# -- placement -----------------------------------------------------------------------------------------


def place(tasks: Sequence[TaskRequest], candidates: Sequence[Candidate]) -> list[Placement]:
    """A placement for each task, in order; each task sees the load of those placed before it."""
    placer = Placer(candidates)
    return [placer.place(task) for task in tasks]


class Placer:
    """Places tasks one at a time against a load that grows with each placement: the reconciler
    places a pass's tasks as it decides them, and later ones must see the earlier ones."""

    def __init__(self, candidates: Sequence[Candidate]) -> None:
        # A node without drivers runs nothing (a manager without a local worker): it is not a candidate,
        # and not worth a word in every pending task's reason either.
        self._nodes = sorted((c.node for c in candidates if c.node.drivers), key=lambda n: n.name)
        self._by_name = {n.name: n for n in self._nodes}
        self._loads = {c.node.name: _Load(c.load) for c in candidates}
        # The static filters depend on the task's static_key only: evaluated once per distinct key.
        self._static: dict[tuple[object, ...], tuple[list[NodeInfo], list[Rejection]]] = {}

    def place(self, task: TaskRequest) -> Placement:
        if task.node is not None:
            pinned = self._by_name.get(task.node)
            if pinned is None:
                return Placement(None, f"node {task.node} no longer exists")
            why = static_rejection(pinned, task)
            if why is not None:
                return Placement(None, explain([why]))
            pool: list[NodeInfo] = [pinned]
            rejected: list[Rejection] = []
        else:
            if task.volumes:
                sticky = self._sticky(task)
                if sticky is not None:
                    return sticky
            pool, rejected = self._eligible(task)
        best: NodeInfo | None = None
        best_rank: tuple[int, int, int, str] | None = None
        load_refusals: list[Rejection] = []
        for node in pool:
            load = self._loads[node.name]
            why = _load_rejection(node, load, task)
            if why is not None:
                load_refusals.append(why)
                continue
            same = load.per_service.get(task.service_id, 0)
            # 0 for a node that holds one of its volumes and no task of its service: preferred.
            fresh = 0 if same == 0 and task.volumes and _held(node, task) else 1
            rank = (fresh, same, load.tasks, node.name)
            if best_rank is None or rank < best_rank:
                best, best_rank = node, rank
        if best is None:
            return Placement(None, explain([*rejected, *load_refusals]))
        self._loads[best.name].add(task)
        return Placement(best.name)

    def _sticky(self, task: TaskRequest) -> Placement | None:
        """The placement on the node holding the task's volumes (or, for `wait`, none and why), or
        None if there is no such node or the task is to be placed like a new one."""
        home = self._by_name.get(task.previous_node) if task.previous_node is not None else None
        held = _held(home, task) if home is not None else []
        if home is None or not held:
            return None
        load = self._loads[home.name]
        why = static_rejection(home, task) or _load_rejection(home, load, task)
        if why is None:
            load.add(task)
            return Placement(home.name)
        if task.volume_policy != "wait":
            return None
        noun = "volume" if len(held) == 1 else "volumes"
        return Placement(
            None,
            f"waiting for node {home.name} ({why.singular.removeprefix('is ')}), which holds {noun} "
            f"{', '.join(held)} (volume policy wait)",
        )

    def _eligible(self, task: TaskRequest) -> tuple[list[NodeInfo], list[Rejection]]:
        key = task.static_key
        cached = self._static.get(key)
        if cached is None:
            ok: list[NodeInfo] = []
            refused: list[Rejection] = []
            for node in self._nodes:
                why = static_rejection(node, task)
                if why is None:
                    ok.append(node)
                else:
                    refused.append(why)
            cached = self._static[key] = (ok, refused)
        return cached


def _held(node: NodeInfo, task: TaskRequest) -> list[str]:
    """The task's volumes that `node` holds (for the task's driver), in the task's order."""
    if not node.volumes:
        return []
    return [v for v in task.volumes if (v, task.driver) in node.volumes]


def explain(rejections: Iterable[Rejection]) -> str:
    """One line such as `no suitable node: 2 nodes lack 512 MiB of free memory, 1 node is down`: the
    most common reason first, then pipeline order, so the likely fix is read first."""
    counts: dict[Rejection, int] = {}
    for r in rejections:
        counts[r] = counts.get(r, 0) + 1
    if not counts:
        return "no suitable node: there are no worker nodes"
    ordered = sorted(counts.items(), key=lambda item: (-item[1], item[0].order, item[0].singular))
    parts = [f"1 node {r.singular}" if n == 1 else f"{n} nodes {r.plural}" for r, n in ordered]
    return "no suitable node: " + ", ".join(parts)


def format_bytes(size: int) -> str:
    """512 MiB, 1.5 GiB, 4096 B: how memory is shown to users."""
    for unit, scale in (("GiB", GIB), ("MiB", MIB), ("KiB", 1024)):
        if size >= scale:
            return f"{_number(size / scale)} {unit}"
    return f"{size} B"


def _number(value: float) -> str:
    text = f"{value:.2f}".rstrip("0").rstrip(".")
    return text or "0"
