"""The picture of the replicated state one planning pass works on, read in three queries.

Tasks are plain mutable records: while a pass decides (fail the tasks of a down node, stop a drained
one), it updates its own picture the way the commands it emits will update the state, so later steps
of the same pass (a replacement) see the outcome at once instead of one round later.

What a pass derives from a service row (its parsed specs, digest, needs) only changes when the row
does, so a `ServiceCache` kept across passes (the leader keeps one per term) parses each service once
per change instead of once per pass: with thousands of services that parsing was nearly all of a pass.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field, replace
from typing import Any

import orjson

from warren.scheduler.placement import Candidate, NodeInfo, NodeLoad, TaskRequest
from warren.spec import taskstate
from warren.spec.service import ServiceSpec, field_default


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


@dataclass(slots=True)
class Service:
    id: str
    name: str
    version: int
    spec: dict[str, Any]
    previous_spec: dict[str, Any] | None
    update_status: dict[str, Any] | None
    task_spec: dict[str, Any]
    digest: str
    needs: Needs  # of task_spec: parsed once per pass
    tasks: list[Task] = field(default_factory=list)

    @property
    def mode(self) -> str:
        return str(self.spec.get("mode") or "replicated")

    @property
    def replicas(self) -> int:
        return int(self.spec.get("replicas", field_default(ServiceSpec, "replicas")) or 0)

    def request(self, node: str | None = None) -> TaskRequest:
        """What placement needs to know of a new task of this service."""
        n = self.needs
        return TaskRequest(self.id, n.driver, n.cpus, n.memory, n.ports, n.constraints, node)


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
    version: the planner reads these dicts and never changes them (it replaces `update_status`)."""

    version: int
    spec: dict[str, Any]
    previous_spec: dict[str, Any] | None
    task_spec: dict[str, Any]
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

    def __len__(self) -> int:
        return len(self._rows)

    def derive(
        self,
        sid: str,
        version: int,
        spec_text: str | bytes,
        previous_text: str | bytes | None,
        status_text: str | None,
    ) -> _Derived:
        """The derived row (cached if the row did not change) and remember it for the next load."""
        hit = self._rows.get(sid)
        if hit is None or hit.version != version:
            hit = _derive(version, spec_text, previous_text, status_text)
        elif hit.status_text != status_text:
            status = None if status_text is None else orjson.loads(status_text)
            hit = replace(hit, status_text=status_text, update_status=status)
        return hit

    def keep(self, rows: dict[str, _Derived]) -> None:
        """The rows the last load read: the only ones worth keeping."""
        self._rows = rows


def _derive(
    version: int, spec_text: str | bytes, previous_text: str | bytes | None, status_text: str | None
) -> _Derived:
    spec = orjson.loads(spec_text)
    task_spec = taskstate.task_spec(spec)
    return _Derived(
        version=version,
        spec=spec,
        previous_spec=None if previous_text is None else orjson.loads(previous_text),
        task_spec=task_spec,
        digest=taskstate.spec_digest(spec),
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
    nodes = {
        row[0]: _node(row)
        for row in cur.execute(
            "SELECT name, role, state, availability, labels, resources FROM nodes ORDER BY name"
        )
    }
    services: list[Service] = []
    by_id: dict[str, Service] = {}
    seen: dict[str, _Derived] = {}
    for sid, name, version, spec_text, previous_text, status_text in cur.execute(
        "SELECT id, name, version, spec, previous_spec, update_status FROM services ORDER BY name"
    ):
        if cache is None:
            d = _derive(version, spec_text, previous_text, status_text)
        else:
            d = seen[sid] = cache.derive(sid, version, spec_text, previous_text, status_text)
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
        cache.keep(seen)
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
            known[task.spec_digest] = needs(orjson.loads(row[13]))
    return State(nodes, services, known)


def needs(spec: dict[str, Any]) -> Needs:
    resources = spec.get("resources") or {}
    ports = tuple(
        (int(p["host"]), str(p.get("protocol") or "tcp"))
        for p in (spec.get("publish") or ())
        if isinstance(p, dict) and p.get("host") is not None
    )
    return Needs(
        driver=str(spec.get("driver") or field_default(ServiceSpec, "driver")),
        cpus=float(resources.get("cpus") or 0.0),
        memory=int(resources.get("memory") or 0),
        ports=ports,
        constraints=tuple(str(c) for c in spec.get("constraints") or ()),
    )


def _node(row: tuple[Any, ...]) -> NodeInfo:
    name, role, state, availability, labels_text, resources_text = row
    labels = orjson.loads(labels_text or "{}")
    resources = orjson.loads(resources_text or "{}")
    cpus = resources.get("cpus")
    memory = resources.get("memory")
    return NodeInfo(
        name=name,
        role=role,
        state=state,
        availability=availability,
        labels={str(k): str(v) for k, v in labels.items()} if isinstance(labels, dict) else {},
        cpus=float(cpus) if isinstance(cpus, int | float) else None,
        memory=int(memory) if isinstance(memory, int | float) else None,
        drivers=frozenset(str(d) for d in resources.get("drivers") or ()),
    )
