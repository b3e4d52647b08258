"""The picture of the replicated state one planning pass works on, read in four queries.

Tasks are plain mutable records: while a pass decides (fail the tasks of a down node, stop a drained
one), it updates its own picture the way the commands it emits will update the state, so later steps
of the same pass (a replacement) see the outcome at once instead of one round later.

What a pass derives from a service row (its decoded specs, digest, needs) only changes when the row
does, so a `ServiceCache` kept across passes (the leader keeps one per term) decodes each service once
per change instead of once per pass: with thousands of services that decoding was nearly all of a pass.

A stored spec that does not decode as a valid ServiceSpec (one written before a check it fails was
added) leaves its service out of the pass, logged: nothing is created or stopped for it until a user
updates its spec to a valid one.
"""

from __future__ import annotations

import logging
import sqlite3
from dataclasses import dataclass, field, replace
from typing import Any

import orjson

from warren.errors import InvalidError
from warren.scheduler.placement import Candidate, NodeInfo, NodeLoad, TaskRequest
from warren.spec import mounts, taskstate
from warren.spec.publishing import node_ports
from warren.spec.service import ServiceSpec, TaskSpec, decode, spec_digest
from warren.store import volumes

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Task:
    id: str
    service_id: str
    slot: int | None
    node: str | None
    desired: str
    state: str
    message: str
    spec_digest: str
    exit_code: int | None
    health: str
    started_at: float | None
    created_at: float
    updated_at: float
    # State read from the store, before this pass changed its picture (history is only collected
    # among tasks that were already final there).
    was_final: bool = False

    @property
    def final(self) -> bool:
        return self.state in taskstate.TERMINAL

    @property
    def live(self) -> bool:
        """Not final and meant to run: what counts towards a slot's (or node's) one task."""
        return self.desired == "running" and self.state not in taskstate.TERMINAL


@dataclass(frozen=True, slots=True)
class Needs:
    """What a task needs of a node, from its spec: what it holds there once placed, and what a node
    must offer to take it."""

    driver: str
    cpus: float
    memory: int
    ports: tuple[tuple[int, str], ...]
    constraints: tuple[str, ...]
    # What of the spec the process runtime cannot honour, as field names (process tasks only).
    unsupported: tuple[str, ...] = ()
    privileged: bool = False
    devices: tuple[str, ...] = ()  # node device paths
    binds: tuple[str, ...] = ()  # node paths bind-mounted
    volumes: tuple[str, ...] = ()  # names of the named volumes mounted (sticky placement)


@dataclass(slots=True)
class Service:
    id: str
    name: str
    version: int
    spec: ServiceSpec
    previous_spec: ServiceSpec | None
    update_status: dict[str, Any] | None
    task_spec: TaskSpec
    digest: str
    needs: Needs  # of task_spec
    tasks: list[Task] = field(default_factory=list)

    @property
    def mode(self) -> str:
        return self.spec.mode

    @property
    def replicas(self) -> int:
        return self.spec.replicas

    def request(self, node: str | None = None, previous_node: str | None = None) -> TaskRequest:
        """What placement needs to know of a new task of this service (`previous_node`: where its
        slot's latest earlier task was placed, for a service that mounts volumes)."""
        n = self.needs
        return TaskRequest(self.id, n.driver, n.cpus, n.memory, n.ports, n.constraints, node,
                           n.unsupported, n.privileged, n.devices, n.binds,
                           volumes=n.volumes, previous_node=previous_node,
                           volume_policy=self.spec.on_volume_node_down)


@dataclass(slots=True)
class State:
    nodes: dict[str, NodeInfo]
    services: list[Service]  # by name
    # Needs of each task spec by digest (same digest, same spec): parsed once per digest.
    needs: dict[str, Needs]

    def candidates(self) -> list[Candidate]:
        """Every node with the load of the tasks it holds now (any task not final holds its
        reservation; only tasks meant to keep running count for spread)."""
        cpus: dict[str, float] = {}
        memory: dict[str, int] = {}
        ports: dict[str, set[tuple[int, str]]] = {}
        tasks: dict[str, int] = {}
        per_service: dict[str, dict[str, int]] = {}
        for service in self.services:
            for t in service.tasks:
                if t.node is None or t.final or t.node not in self.nodes:
                    continue
                r = self.needs.get(t.spec_digest)
                if r is not None:
                    cpus[t.node] = cpus.get(t.node, 0.0) + r.cpus
                    memory[t.node] = memory.get(t.node, 0) + r.memory
                    if r.ports:
                        ports.setdefault(t.node, set()).update(r.ports)
                if t.desired == "running":
                    tasks[t.node] = tasks.get(t.node, 0) + 1
                    counts = per_service.setdefault(t.node, {})
                    counts[t.service_id] = counts.get(t.service_id, 0) + 1
        return [
            Candidate(
                node,
                NodeLoad(
                    cpus=cpus.get(name, 0.0),
                    memory=memory.get(name, 0),
                    ports=frozenset(ports.get(name, ())),
                    tasks=tasks.get(name, 0),
                    per_service=per_service.get(name, {}),
                ),
            )
            for name, node in self.nodes.items()
        ]


@dataclass(frozen=True, slots=True)
class _Derived:
    """What `load` derives from one service row at one version. Shared by the passes that see that
    version: the planner never changes them (it replaces `update_status`)."""

    version: int
    spec: ServiceSpec
    previous_spec: ServiceSpec | None
    task_spec: TaskSpec
    digest: str
    needs: Needs
    status_text: str | None
    update_status: dict[str, Any] | None


class ServiceCache:
    """What `load` derived from each service row, by service ID, valid while the row's version is the
    same. `version` is the Raft index of the row's last change and every command that changes a
    service's spec or previous spec sets it; `update_status` is written without bumping it (so a
    user's If-Match survives the reconciler's progress reports), so that column is compared by text.
    Each `load` keeps only the services it read: removed services are dropped at once."""

    def __init__(self) -> None:
        self._rows: dict[str, _Derived] = {}
        self._refused: dict[str, int] = {}  # service ID -> version whose spec was refused (logged)

    def __len__(self) -> int:
        return len(self._rows)

    def derive(
        self,
        sid: str,
        version: int,
        spec_text: str | bytes,
        previous_text: str | bytes | None,
        status_text: str | None,
    ) -> _Derived | None:
        """The derived row (cached if the row did not change); None if its spec does not decode (logged
        once per version)."""
        hit = self._rows.get(sid)
        if hit is None or hit.version != version:
            if self._refused.get(sid) == version:
                return None
            hit = _derive_or_log(sid, version, spec_text, previous_text, status_text)
            if hit is None:
                self._refused[sid] = version
                return None
        elif hit.status_text != status_text:
            status = None if status_text is None else orjson.loads(status_text)
            hit = replace(hit, status_text=status_text, update_status=status)
        return hit

    def keep(self, rows: dict[str, _Derived], read: set[str]) -> None:
        """The rows the last load derived, of the services it `read`: the only ones worth keeping."""
        self._rows = rows
        self._refused = {sid: v for sid, v in self._refused.items() if sid in read}


def _derive_or_log(
    sid: str, version: int, spec_text: str | bytes, previous_text: str | bytes | None, status_text: str | None
) -> _Derived | None:
    try:
        return _derive(version, spec_text, previous_text, status_text)
    except InvalidError as exc:
        log.error("service %s is left alone: its stored spec is not a valid one: %s", sid, exc)
        return None


def _derive(
    version: int, spec_text: str | bytes, previous_text: str | bytes | None, status_text: str | None
) -> _Derived:
    spec = decode(ServiceSpec, spec_text)
    task_spec = spec.task_spec()
    return _Derived(
        version=version,
        spec=spec,
        previous_spec=None if previous_text is None else decode(ServiceSpec, previous_text),
        task_spec=task_spec,
        digest=spec_digest(task_spec),
        needs=needs(task_spec),
        status_text=status_text,
        update_status=None if status_text is None else orjson.loads(status_text),
    )


def load(conn: sqlite3.Connection, cache: ServiceCache | None = None) -> State:
    """The state as the store holds it now. With a `cache`, service rows unchanged since its last
    load are not parsed again (the same State either way)."""
    # Plain tuples (the store's connection makes sqlite3.Row objects, several times slower to build).
    cur = conn.cursor()
    cur.row_factory = None
    held = volumes.held(conn)
    nodes = {
        row[0]: _node(row, held.get(row[0], frozenset()))
        for row in cur.execute(
            "SELECT name, role, state, availability, labels, resources, operator_labels FROM nodes"
            " ORDER BY name"
        )
    }
    services: list[Service] = []
    by_id: dict[str, Service] = {}
    seen: dict[str, _Derived] = {}
    read: set[str] = set()
    for sid, name, version, spec_text, previous_text, status_text in cur.execute(
        "SELECT id, name, version, spec, previous_spec, update_status FROM services ORDER BY name"
    ):
        read.add(sid)
        if cache is None:
            d = _derive_or_log(sid, version, spec_text, previous_text, status_text)
        else:
            d = cache.derive(sid, version, spec_text, previous_text, status_text)
        if d is None:
            continue
        seen[sid] = d
        service = Service(
            id=sid,
            name=name,
            version=version,
            spec=d.spec,
            previous_spec=d.previous_spec,
            update_status=d.update_status,
            task_spec=d.task_spec,
            digest=d.digest,
            needs=d.needs,
        )
        services.append(service)
        by_id[sid] = service
    if cache is not None:
        cache.keep(seen, read)
    known: dict[str, Needs] = {s.digest: s.needs for s in services}
    for row in cur.execute(
        "SELECT id, service_id, slot, node, desired_state, state, message, spec_digest, exit_code, health,"
        " started_at, created_at, updated_at, CASE WHEN node IS NOT NULL AND spec_digest NOT IN"
        f" (SELECT value FROM json_each(?)) AND state NOT IN {taskstate.TERMINAL_SQL}"
        " THEN spec ELSE NULL END FROM tasks ORDER BY created_at, id",
        (orjson.dumps(sorted(known)).decode(),),
    ):
        owner = by_id.get(row[1])
        if owner is None:  # its service is gone (removing a service deletes its tasks)
            continue
        task = Task(*row[:13])
        task.was_final = task.final
        owner.tasks.append(task)
        if row[13] is not None and task.spec_digest not in known:
            try:
                known[task.spec_digest] = needs(decode(TaskSpec, row[13]))
            except InvalidError as exc:  # its node's load leaves it out; the task itself is kept
                log.warning("task %s: its stored spec is not a valid one: %s", task.id, exc)
    return State(nodes, services, known)


def needs(spec: TaskSpec) -> Needs:
    options = spec.options
    return Needs(
        driver=spec.driver,
        cpus=spec.resources.cpus or 0.0,
        memory=spec.resources.memory or 0,
        ports=node_ports(spec.driver, spec.publish),
        constraints=tuple(spec.constraints),
        unsupported=_unsupported_by_process(spec) if spec.driver == "process" else (),
        privileged=options.privileged,
        devices=tuple(d.host for d in options.devices),
        binds=tuple(mounts.bind_sources(spec.mount_list)),
        volumes=tuple(spec.volumes),
    )


def _unsupported_by_process(spec: TaskSpec) -> tuple[str, ...]:
    options = [f"container.{name}" for name in spec.options.unsupported_by_process()]
    return (*options, *mounts.unsupported_by_process(spec.mount_list))


def _node(row: tuple[Any, ...], volumes_held: frozenset[tuple[str, str]]) -> NodeInfo:
    name, role, state, availability, labels_text, resources_text, operator_text = row
    reported, operator = orjson.loads(labels_text or "{}"), orjson.loads(operator_text or "{}")
    # An operator's label (node update --label-add) wins over the same one a worker reports.
    labels = {**(reported if isinstance(reported, dict) else {}),
              **(operator if isinstance(operator, dict) else {})}
    resources = orjson.loads(resources_text or "{}")
    cpus = resources.get("cpus")
    memory = resources.get("memory")
    return NodeInfo(
        name=name,
        role=role,
        state=state,
        availability=availability,
        labels={str(k): str(v) for k, v in labels.items()},
        cpus=float(cpus) if isinstance(cpus, int | float) else None,
        memory=int(memory) if isinstance(memory, int | float) else None,
        drivers=frozenset(str(d) for d in resources.get("drivers") or ()),
        allow_privileged=resources.get("allow_privileged") is True,
        allow_devices=tuple(str(d) for d in resources.get("allow_devices") or ()),
        allow_binds=tuple(str(d) for d in resources.get("allow_binds") or ()),
        volumes=volumes_held,
    )
