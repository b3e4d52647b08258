"""Cluster events, derived from the commands the state machine applies, and the ring that keeps them.

Every manager applies the same commands in the same order, so every manager derives the same events
with the same ids: an event's id is its log index and its ordinal among the events of that entry
("1234.0", "1234.1"; commands proposed together share an entry, and their events count on). A client
that loses its manager resumes on another from the last id it saw, with no duplicates.

Deterministic like apply: the inputs are the command, its log index, what its handler reported and
the state; the only clock read is the applying manager's, for the time of a command that carries
none (task removal). Events are derived only from a command that applied (a refused one yields
nothing) and published only once its batch committed.

The ring (EventRing) keeps the last `max_events` events and none older than `max_age_s`, in memory.
It knows its horizon: the newest id it can no longer vouch for (the applied index it started from, or
the last event it dropped); a reader asking from before it is told what was lost.
"""

from __future__ import annotations

import asyncio
import bisect
import collections
import re
import sqlite3
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from warren.store import commands as c

Scalar = str | int | float | bool | None

TYPES = ("leader", "manager", "node", "task", "service", "secret", "config", "certificate")

# An event id as the API takes it: "<log index>.<ordinal>".
MAX_ORDINAL = 10**9
ID_PATTERN = re.compile(r"^([0-9]{1,19})\.([0-9]{1,9})$")


@dataclass(slots=True)  # not frozen (a frozen one is built field by field, twice as slow): never changed
class Event:
    index: int
    ordinal: int
    time: float
    type: str
    action: str
    actor: str
    attributes: dict[str, Scalar]
    message: str

    @property
    def id(self) -> str:
        return f"{self.index}.{self.ordinal}"

    @property
    def key(self) -> tuple[int, int]:
        return (self.index, self.ordinal)

    def to_doc(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "time": self.time,
            "type": self.type,
            "action": self.action,
            "actor": self.actor,
            "attributes": self.attributes,
            "message": self.message,
        }


def parse_id(text: str) -> tuple[int, int] | None:
    """The (index, ordinal) of an event id; None if `text` is not one."""
    m = ID_PATTERN.match(text)
    return None if m is None else (int(m.group(1)), int(m.group(2)))


def format_key(key: tuple[int, int]) -> str:
    return f"{key[0]}.{key[1]}"


# -- derivation ---------------------------------------------------------------------------------------

# (type, action, actor, attributes, message, time or None for the command's own time)
Draft = tuple[str, str, str, dict[str, Scalar], str, float | None]
Deriver = Callable[[sqlite3.Connection, Any, dict[str, Any]], Iterable[Draft]]

# Keys a handler may add to its result for the events (popped by `derive`, never answered): what
# changed that the result's counts do not say.
PRIVATE_KEYS = ("_moves", "_created", "_assigned", "_before")


def derive(
    conn: sqlite3.Connection, cmd: c.Command, result: Any, names: dict[str, str] | None = None
) -> list[Draft]:
    """The events of `cmd`, applied with `result` (whose private keys are popped here). `names`
    caches service names by service ID (an ID is never reused: a name never changes under it)."""
    private: dict[str, Any] = {}
    if isinstance(result, dict):
        for key in PRIVATE_KEYS:
            if key in result:
                private[key] = result.pop(key)
    deriver = _DERIVERS.get(type(cmd))
    if deriver is None:
        return []
    private["result"] = result
    private["names"] = {} if names is None else names
    return list(deriver(conn, cmd, private))


def _service_names(conn: sqlite3.Connection, service_ids: Iterable[str]) -> dict[str, str]:
    ids = list(dict.fromkeys(service_ids))
    names: dict[str, str] = {}
    for start in range(0, len(ids), 900):
        chunk = ids[start : start + 900]
        marks = ",".join("?" * len(chunk))
        for row in conn.execute(f"SELECT id, name FROM services WHERE id IN ({marks})", chunk):
            names[row[0]] = row[1]
    return names


def _task_label(service: str | None, slot: Any, task_id: str) -> str:
    if service is None:
        return f"task {task_id}"
    return f"task {service}.{slot} ({task_id})" if slot is not None else f"task {service} ({task_id})"


def _created_tasks(conn: sqlite3.Connection, cmd: c.CreateTasks, p: dict[str, Any]) -> Iterable[Draft]:
    created = p.get("_created") or []
    names = _service_names(conn, (t[1] for t in created))
    for task_id, service_id, slot, node, state, message in created:
        service = names.get(service_id)
        where = f"on node {node}" if node else f"unplaced: {message}" if message else "unplaced"
        yield (
            "task",
            "created",
            task_id,
            {"service": service, "slot": slot, "node": node, "from": None, "to": state, "reason": message},
            f"{_task_label(service, slot, task_id)} created, {state} {where}",
            None,
        )


def _assigned_tasks(conn: sqlite3.Connection, cmd: c.AssignTasks, p: dict[str, Any]) -> Iterable[Draft]:
    assigned = p.get("_assigned") or []
    if not assigned:
        return
    ids = [a[0] for a in assigned]
    info = _task_info(conn, ids)
    for task_id, node, message in assigned:
        service, slot = info.get(task_id, (None, None))
        yield (
            "task",
            "state",
            task_id,
            {
                "service": service,
                "slot": slot,
                "node": node,
                "from": "pending",
                "to": "assigned",
                "reason": message,
            },
            f"{_task_label(service, slot, task_id)}: pending -> assigned to node {node}",
            None,
        )


def _task_info(conn: sqlite3.Connection, ids: list[str]) -> dict[str, tuple[str | None, Any]]:
    """task id -> (service name, slot), one SELECT per 900 tasks."""
    info: dict[str, tuple[str | None, Any]] = {}
    unique = list(dict.fromkeys(ids))
    for start in range(0, len(unique), 900):
        chunk = unique[start : start + 900]
        marks = ",".join("?" * len(chunk))
        for row in conn.execute(
            f"SELECT t.id, s.name, t.slot FROM tasks t LEFT JOIN services s ON s.id = t.service_id"
            f" WHERE t.id IN ({marks})",
            chunk,
        ):
            info[row[0]] = (row[1], row[2])
    return info


def _task_statuses(conn: sqlite3.Connection, cmd: c.SetTaskStatuses, p: dict[str, Any]) -> Iterable[Draft]:
    moves = p.get("_moves") or []
    if not moves:
        return
    names = p["names"]
    missing = {m[1] for m in moves if m[1] not in names}
    if missing:
        names.update(_service_names(conn, missing))
    for task_id, service_id, slot, node, before, after, message, exit_code, at in moves:
        service = names.get(service_id)
        attrs: dict[str, Scalar] = {
            "service": service,
            "slot": slot,
            "node": node,
            "from": before,
            "to": after,
            "reason": message,
        }
        if exit_code is not None:
            attrs["exit_code"] = exit_code
        why = f": {message}" if message else ""
        label = _task_label(service, slot, task_id)
        yield ("task", "state", task_id, attrs, f"{label}: {before} -> {after}{why}", at)


def _node_state(conn: sqlite3.Connection, cmd: c.SetNodeState, p: dict[str, Any]) -> Iterable[Draft]:
    role, before = p.get("_before") or (None, None)
    if before == cmd.state:
        return
    if role == "manager":
        if before == "joining" and cmd.state == "ready":
            yield ("manager", "joined", cmd.name, {"from": before}, f"manager {cmd.name} joined", None)
        else:
            action = "up" if cmd.state == "ready" else cmd.state
            yield (
                "manager",
                action,
                cmd.name,
                {"from": before, "to": cmd.state},
                f"manager {cmd.name}: {before} -> {cmd.state}",
                None,
            )
        return
    action = {"ready": "up", "down": "down"}.get(cmd.state, cmd.state)
    yield ("node", action, cmd.name, {"from": before, "to": cmd.state}, f"node {cmd.name} is {action}", None)


def _node_removed(conn: sqlite3.Connection, cmd: c.RemoveNode, p: dict[str, Any]) -> Iterable[Draft]:
    role = (p.get("_before") or (None, None))[0]
    failed = p["result"].get("tasks_failed", 0) if isinstance(p["result"], dict) else 0
    kind = "manager" if role == "manager" else "node"
    yield (
        kind,
        "removed",
        cmd.name,
        {"role": role, "tasks_failed": failed},
        f"{kind} {cmd.name} removed",
        None,
    )
    yield (
        "certificate",
        "revoked",
        cmd.name,
        {"node": cmd.name},
        f"the certificates of {kind} {cmd.name} are revoked",
        None,
    )


def _node_availability(
    conn: sqlite3.Connection, cmd: c.SetNodeAvailability, p: dict[str, Any]
) -> Iterable[Draft]:
    before = (p.get("_before") or (None, None))[1]
    if before == cmd.availability:
        return
    action = "drained" if cmd.availability == "drain" else "active"
    yield (
        "node",
        action,
        cmd.name,
        {"from": before, "to": cmd.availability},
        f"node {cmd.name} is {'drained' if action == 'drained' else 'active again'}",
        None,
    )


def _worker_joined(conn: sqlite3.Connection, cmd: c.RegisterWorker, p: dict[str, Any]) -> Iterable[Draft]:
    yield (
        "node",
        "joined",
        cmd.name,
        {"role": "worker", "addr": cmd.addr},
        f"worker {cmd.name} joined",
        None,
    )


def _manager_joining(conn: sqlite3.Connection, cmd: c.RegisterManager, p: dict[str, Any]) -> Iterable[Draft]:
    yield ("manager", "joining", cmd.name, {"api_addr": cmd.api_addr}, f"manager {cmd.name} is joining", None)


def _cluster_init(conn: sqlite3.Connection, cmd: c.InitCluster, p: dict[str, Any]) -> Iterable[Draft]:
    yield (
        "manager",
        "joined",
        cmd.manager.name,
        {"founder": True, "cluster_id": cmd.cluster_id},
        f"manager {cmd.manager.name} founded cluster {cmd.cluster_id}",
        None,
    )


def _managers_reset(conn: sqlite3.Connection, cmd: c.ResetManagers, p: dict[str, Any]) -> Iterable[Draft]:
    yield (
        "manager",
        "reset",
        cmd.manager.name,
        {},
        f"managers reset after a restore: {cmd.manager.name} is the only one",
        None,
    )


def _cert_recorded(conn: sqlite3.Connection, cmd: c.RecordCert, p: dict[str, Any]) -> Iterable[Draft]:
    yield (
        "certificate",
        "issued",
        cmd.node,
        {"node": cmd.node, "role": cmd.role, "expires_at": cmd.expires_at},
        f"a {cmd.role} certificate was issued to {cmd.node}",
        None,
    )


def _service_created(conn: sqlite3.Connection, cmd: c.CreateService, p: dict[str, Any]) -> Iterable[Draft]:
    s = cmd.spec
    replicas = s.replicas if s.mode == "replicated" else None
    yield (
        "service",
        "created",
        cmd.name,
        {"mode": s.mode, "replicas": replicas, "image": s.image},
        f"service {cmd.name} created ({s.mode}{'' if replicas is None else f', {replicas} replicas'})",
        None,
    )


def _service_updated(conn: sqlite3.Connection, cmd: c.UpdateService, p: dict[str, Any]) -> Iterable[Draft]:
    keys = sorted(cmd.changes)
    if keys == ["replicas"]:
        n = cmd.changes["replicas"]
        yield ("service", "scaled", cmd.name, {"replicas": n}, f"service {cmd.name} scaled to {n}", None)
        return
    yield (
        "service",
        "updated",
        cmd.name,
        {"changed": ",".join(keys)},
        f"service {cmd.name} updated ({', '.join(keys) or 'no change'})",
        None,
    )


def _service_rolled_back(
    conn: sqlite3.Connection, cmd: c.RollbackService, p: dict[str, Any]
) -> Iterable[Draft]:
    who = "by request" if cmd.requested else "by the rolling update's failure policy"
    yield (
        "service",
        "rolled-back",
        cmd.name,
        {"requested": cmd.requested},
        f"service {cmd.name} rolled back {who}",
        None,
    )


def _service_update_status(
    conn: sqlite3.Connection, cmd: c.SetUpdateStatus, p: dict[str, Any]
) -> Iterable[Draft]:
    if cmd.status is None:
        return
    state = cmd.status.get("state")
    message = cmd.status.get("message")
    attrs: dict[str, Scalar] = {
        "state": state if isinstance(state, str) else None,
        "message": message if isinstance(message, str) else None,
    }
    why = f": {message}" if isinstance(message, str) and message else ""
    yield ("service", "update-progress", cmd.name, attrs, f"service {cmd.name} update {state}{why}", None)


def _service_removed(conn: sqlite3.Connection, cmd: c.RemoveService, p: dict[str, Any]) -> Iterable[Draft]:
    yield ("service", "removed", cmd.name, {}, f"service {cmd.name} removed", None)


def _named(kind: str, action: str) -> Deriver:
    def derive_named(conn: sqlite3.Connection, cmd: Any, p: dict[str, Any]) -> Iterable[Draft]:
        # Names only: never a secret's (sealed) data or a config's bytes.
        yield (kind, action, cmd.name, {}, f"{kind} {cmd.name} {action}", None)

    return derive_named


def _note(conn: sqlite3.Connection, cmd: c.ClusterNote, p: dict[str, Any]) -> Iterable[Draft]:
    yield (cmd.type, cmd.action, cmd.actor, dict(cmd.attributes), cmd.message, None)


_DERIVERS: dict[type[Any], Deriver] = {
    c.InitCluster: _cluster_init,
    c.RegisterManager: _manager_joining,
    c.SetNodeState: _node_state,
    c.RemoveNode: _node_removed,
    c.RegisterWorker: _worker_joined,
    c.SetNodeAvailability: _node_availability,
    c.ResetManagers: _managers_reset,
    c.RecordCert: _cert_recorded,
    c.CreateService: _service_created,
    c.UpdateService: _service_updated,
    c.RollbackService: _service_rolled_back,
    c.SetUpdateStatus: _service_update_status,
    c.RemoveService: _service_removed,
    c.CreateTasks: _created_tasks,
    c.AssignTasks: _assigned_tasks,
    c.SetTaskStatuses: _task_statuses,
    c.CreateSecret: _named("secret", "created"),
    c.RemoveSecret: _named("secret", "removed"),
    c.CreateConfig: _named("config", "created"),
    c.RemoveConfig: _named("config", "removed"),
    c.ClusterNote: _note,
}


# -- the ring -----------------------------------------------------------------------------------------


class Subscription:
    """A live reader of the ring: new events queue here (at most `limit`); past that, `overflowed` is
    set, the queue stops growing and the reader must resume from its last id."""

    def __init__(self, ring: EventRing, limit: int) -> None:
        self._ring = ring
        self._limit = limit
        self._queue: collections.deque[Event] = collections.deque()
        self._wake = asyncio.Event()
        self.overflowed = False
        self.reset = False  # the ring was reset (a snapshot installed): resume from its horizon
        self.closed = False  # the manager is stopping: the stream ends

    def push(self, event: Event) -> None:
        if self.overflowed:
            return
        if len(self._queue) >= self._limit:
            self.overflowed = True
            self._queue.clear()
        else:
            self._queue.append(event)
        self._wake.set()

    def mark_closed(self) -> None:
        self.closed = True
        self._wake.set()

    def mark_reset(self) -> None:
        self.reset = True
        self._queue.clear()
        self._wake.set()

    async def next_batch(self, timeout_s: float) -> list[Event]:
        """The queued events (waiting up to `timeout_s` for one); [] on timeout, overflow or reset."""
        if not self._queue and not self.overflowed and not self.reset and not self.closed:
            self._wake.clear()
            try:
                async with asyncio.timeout(timeout_s):
                    await self._wake.wait()
            except TimeoutError:
                return []
        batch = list(self._queue)
        self._queue.clear()
        return batch

    def close(self) -> None:
        self._ring._subscribers.discard(self)


@dataclass(frozen=True, slots=True)
class Slice:
    events: list[Event]
    first: str | None
    last: str | None
    # The id (or duration) asked from, and the first id held, when events in between are gone.
    lost: dict[str, Any] | None = None


@dataclass
class EventRing:
    """The last `max_events` events, none older than `max_age_s` (by their time: the leader's clock)."""

    max_events: int = 10_000
    max_age_s: float = 3600.0
    clock: Callable[[], float] = time.time
    _events: collections.deque[Event] = field(default_factory=collections.deque)
    _keys: collections.deque[tuple[int, int]] = field(default_factory=collections.deque)
    # Every event with a key above this one is held (or dropped by the age bound since); (index, -1):
    # from that index on, (index, MAX_ORDINAL): after that index.
    horizon: tuple[int, int] = (0, -1)
    # The time of the newest event dropped (or of the last reset): a duration reaching back before it
    # may miss some.
    horizon_time: float = 0.0
    _subscribers: set[Subscription] = field(default_factory=set)
    closed: bool = False

    def __len__(self) -> int:
        return len(self._events)

    def reset(self, applied_index: int) -> None:
        """Start again after `applied_index` (a restore or snapshot install: what came before is
        unknown to this ring). Live readers are told to resume."""
        self._events.clear()
        self._keys.clear()
        self.horizon = (applied_index, MAX_ORDINAL) if applied_index > 0 else (0, -1)
        self.horizon_time = self.clock() if applied_index > 0 else 0.0
        for sub in list(self._subscribers):
            sub.mark_reset()

    def publish(self, events: list[Event]) -> None:
        if not events:
            return
        for event in events:
            self._events.append(event)
            self._keys.append(event.key)
        self._prune()
        for sub in list(self._subscribers):
            for event in events:
                sub.push(event)

    def _prune(self) -> None:
        oldest = self.clock() - self.max_age_s
        while self._events and (len(self._events) > self.max_events or self._events[0].time < oldest):
            dropped = self._events.popleft()
            self._keys.popleft()
            self.horizon = dropped.key
            self.horizon_time = max(self.horizon_time, dropped.time)

    def subscribe(self, limit: int) -> Subscription:
        sub = Subscription(self, limit)
        if self.closed:
            sub.mark_closed()
        else:
            self._subscribers.add(sub)
        return sub

    def close(self) -> None:
        """The manager is stopping: every live reader's stream ends (a new one ends at once)."""
        self.closed = True
        for sub in list(self._subscribers):
            sub.mark_closed()
        self._subscribers.clear()

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    def read(
        self,
        since: tuple[int, int] | None = None,
        *,
        newer_than: float | None = None,
        match: Callable[[Event], bool] | None = None,
        limit: int | None = None,
        asked: str | None = None,
    ) -> Slice:
        """Held events after id `since` (or of a time after `newer_than`; neither: all held), those
        `match` accepts, the oldest `limit` of them; `lost` says if some of those asked for are gone.
        `asked` is what the reader gave (for the message)."""
        self._prune()
        lost = None
        start = 0
        if since is not None:
            start = bisect.bisect_right(self._keys, since)
            if since < self.horizon:
                lost = self._lost(asked or format_key(since))
        elif newer_than is not None and newer_than < self.horizon_time:
            lost = self._lost(asked or f"{newer_than:.3f}")
        picked: list[Event] = []
        for i in range(start, len(self._events)):
            event = self._events[i]
            if newer_than is not None and event.time <= newer_than:
                continue
            if match is None or match(event):
                picked.append(event)
                if limit is not None and len(picked) >= limit:
                    break
        return Slice(picked, self.first, self.last, lost)

    @property
    def first(self) -> str | None:
        return self._events[0].id if self._events else None

    @property
    def last(self) -> str | None:
        return self._events[-1].id if self._events else None

    def _lost(self, asked: str) -> dict[str, Any]:
        first = self.first
        return {
            "after": asked,
            "before": first,
            "message": (
                f"events after {asked} are partly gone from this manager: it keeps the last "
                f"{self.max_events} events of the last {self.max_age_s:g} s, from when it started or "
                "last installed a snapshot"
                + (f"; the oldest it holds is {first}" if first else "; it holds none yet")
            ),
        }
