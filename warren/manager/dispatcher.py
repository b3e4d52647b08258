"""The leader's side of worker sessions (docs/worker-protocol.md): heartbeats, assignments, task status
and log requests.

Heartbeats never touch Raft: the leader keeps each worker's last-seen time in memory (monotonic
clock) and writes only a change of state, `down` after `node_down_grace_s` of silence, `ready` when a
down worker calls again. A new leader builds a new Dispatcher, so every worker gets a fresh grace.

A session call is held until the worker's assignments differ from what it has (`known`), a log
request waits for it, a removal of one of its volumes is asked for, or the heartbeat period passes;
held calls wake on every state change (Store.on_change), never by polling. Status updates from every
worker are merged per task and proposed as one SetTaskStatuses, one proposal at a time; each caller is
answered once the batch holding its updates has committed.

A worker reports its volumes (its whole inventory) when they change; the leader writes NodeVolumes only
when the list differs from the stored one, so a worker reporting the same list costs no Raft write.
Every answer lists the volumes of the node whose removal was asked for (`remove_volumes`).

A worker that asks for them (`known_endpoints`) is also sent where every service's tasks are
(warren.manager.endpoints), whenever they differ from what it has: its held call returns on that too,
but for that alone no sooner than `endpoints_interval_s` after the last table sent to it (during a
large create they change at every commit). The document is the same for every worker, computed once
per applied index.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import msgspec
from msgspec import UNSET, UnsetType

from warren.config import OrchestratorSettings
from warren.errors import ConflictError, UnauthorizedError, UnavailableError, WarrenError
from warren.manager import configs as config_contents
from warren.manager import endpoints as service_endpoints
from warren.manager import secrets as secret_values
from warren.manager.logrelay import LogRelay
from warren.spec.mounts import inventory_digest
from warren.spec.taskstate import RANK, TERMINAL_SQL
from warren.store import commands as c
from warren.store import queries, volumes

if TYPE_CHECKING:
    from warren.manager.metrics import ManagerMetrics
    from warren.store.machine import Store

log = logging.getLogger(__name__)

Propose = Callable[[c.Command], Awaitable[Any]]

# Compared with when a node has no secret (unknown or removed), so a miss costs what a hit costs.
_NO_SECRET = hashlib.sha256(b"warren: no such node").hexdigest()


# What queries.assignments lists, per node (task_id, desired_state, spec_digest: what its digest covers).
# tests/unit/manager/test_dispatcher.py checks that both give the same digests.
_ASSIGNED_SQL = (
    "SELECT node, id, desired_state, spec_digest FROM tasks"
    f" WHERE node IS NOT NULL AND state NOT IN {TERMINAL_SQL}"
)
_NO_ASSIGNMENTS = queries.assignments_digest([])


def secret_digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def check_secret(store: Store, node: str, secret: str | None) -> None:
    """UnauthorizedError unless `secret` is the session secret of worker `node` (compared in constant
    time on its SHA-256; neither the secret nor its digest is ever logged)."""
    stored = queries.node_secret_hash(store.conn, node)
    presented = secret_digest(secret or "")
    if not hmac.compare_digest(presented, stored or _NO_SECRET) or stored is None or not secret:
        raise UnauthorizedError("invalid or unknown worker session secret (was the node removed?)")


@dataclass(frozen=True, slots=True)
class NodeReport:
    """What a worker reports on its first session call after a start (None: not reported)."""

    addr: str | None = None
    labels: dict[str, Any] | None = None
    resources: dict[str, Any] | None = None
    # The worker's volumes ([{"name", "driver"}], docs/worker-protocol.md), when it reports them.
    volumes: list[dict[str, Any]] | None = None

    def changes(self, doc: dict[str, Any]) -> tuple[str, dict[str, Any], dict[str, Any]] | None:
        """(addr, labels, resources) to record if they differ from the node's `doc`, else None."""
        # The worker's own labels (`labels` is them with an operator's over them: not the worker's to write).
        reported = doc.get("reported_labels", doc.get("labels"))
        new = (
            doc.get("addr") if self.addr is None else self.addr,
            reported if self.labels is None else self.labels,
            doc.get("resources") if self.resources is None else self.resources,
        )
        old = (doc.get("addr"), reported, doc.get("resources"))
        if new == old or new[0] is None:
            return None
        return str(new[0]), dict(new[1] or {}), dict(new[2] or {})


@dataclass(slots=True)
class _Batch:
    """Status updates waiting for the next flush, merged per task.

    Fed from the network, so bounded (docs/security.md): one request carries at most
    api.models.MAX_STATUS_UPDATES updates (and max_request_bytes), a worker has at most
    settings.status_pending_per_node_max distinct tasks waiting (past it, 503 until the flush), so a
    batch holds at most that many per node with a session; it is proposed in SetTaskStatuses of at
    most settings.status_batch_max updates.
    """

    updates: dict[tuple[str, str], c.TaskStatus] = field(default_factory=dict)
    per_node: dict[str, int] = field(default_factory=dict)  # distinct tasks in `updates`, by node
    done: asyncio.Future[None] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


def _consume(fut: asyncio.Future[None]) -> None:
    # A batch whose every caller went away still fails; reading the exception stops asyncio from
    # reporting it as never retrieved.
    if not fut.cancelled():
        fut.exception()


class Dispatcher:
    """One leader term's worker sessions. `start()` when leadership is gained, `stop()` when lost."""

    def __init__(
        self,
        store: Store,
        propose: Propose,
        settings: OrchestratorSettings,
        *,
        hold_s: float | None = None,
        metrics: ManagerMetrics | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        data_key: bytes | None = None,
    ) -> None:
        self.store = store
        # Opens the secrets a worker's tasks use, for its session answer (None: none can be delivered).
        self.data_key = data_key
        self.propose = propose
        self.settings = settings
        # How long a session call is held at most: the heartbeat period, unless the daemon caps it
        # below the follower's forward timeout (a held call may arrive through a follower).
        self.hold_s = settings.heartbeat_period_s if hold_s is None else hold_s
        self.metrics = metrics
        self.clock = clock
        self.wall = wall
        self.logs = LogRelay(clock)
        self._since = clock()  # the fresh grace: nobody is late before since + grace
        self._last_seen: dict[str, float] = {}
        self._changed = asyncio.Event()
        self._digests: dict[str, str] = {}
        self._digests_at = -1  # the applied index _digests was built at
        self._removals: dict[str, list[str]] = {}  # node -> volumes to remove, at _removals_at
        self._removals_at = -1
        self._endpoints: service_endpoints.Endpoints | None = None  # at _endpoints_at
        self._endpoints_at = -1
        self._discovery: dict[str, service_endpoints.ServiceView] = {}  # what endpoints.compute read
        # node -> the event loop's time before which its held call does not return for a change of
        # the endpoints alone (settings.endpoints_interval_s after the last table sent to it).
        self._endpoints_due: dict[str, float] = {}
        # node -> the volumes it reported last, while they are not the stored ones (a write that failed
        # is tried again on its next call: the worker does not report an unchanged list again).
        self._volumes_reported: dict[str, list[tuple[str, str]]] = {}
        self._volumes_retry_at: dict[str, float] = {}  # node -> not before (clock), after a failed write
        self._stopped = False
        self._batch: _Batch | None = None
        self._flush_wanted = asyncio.Event()
        self._node_writes: dict[str, asyncio.Task[None]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self.held = 0  # session calls being held now (the sessions_held gauge reads it)

    # -- lifecycle ------------------------------------------------------------------------------------

    def start(self) -> None:
        self._since = self.clock()
        self.store.on_change.append(self._on_change)
        self._tasks = [
            asyncio.create_task(self._liveness_loop(), name="dispatcher-liveness"),
            asyncio.create_task(self._flush_loop(), name="dispatcher-status"),
        ]

    async def stop(self) -> None:
        """Answer held calls and waiting status callers with 503 (the worker retries elsewhere), end
        the log streams, and stop the timers."""
        self._stopped = True
        with contextlib.suppress(ValueError):
            self.store.on_change.remove(self._on_change)
        self._on_change()
        self.logs.end_all("this manager is no longer the leader")
        tasks = [*self._tasks, *self._node_writes.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._batch is not None and not self._batch.done.done():
            self._batch.done.set_exception(UnavailableError("this manager is no longer the leader"))

    def _on_change(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def digest(self, node: str) -> str:
        """queries.assignments_digest of the node's assignments, from a table of every node's digest
        built once per applied index: every held session checks its own after each commit, and one
        light query beats one full assignments read per worker."""
        if self._digests_at != self.store.applied_index:
            self._digests_at = self.store.applied_index
            per_node: dict[str, list[dict[str, Any]]] = {}
            for row in self.store.conn.execute(_ASSIGNED_SQL):
                per_node.setdefault(row[0], []).append(
                    {"task_id": row[1], "desired_state": row[2], "spec_digest": row[3]}
                )
            self._digests = {n: queries.assignments_digest(docs) for n, docs in per_node.items()}
        return self._digests.get(node) or _NO_ASSIGNMENTS

    def removals(self, node: str) -> list[str]:
        """The volumes of `node` whose removal was asked for (volumes.removals, read once per applied
        index, like `digest`)."""
        if self._removals_at != self.store.applied_index:
            self._removals_at = self.store.applied_index
            self._removals = volumes.removals(self.store.conn)
        return self._removals.get(node, [])

    def endpoints(self) -> service_endpoints.Endpoints:
        """Where every service's tasks are (warren.manager.endpoints), computed once per applied
        index, like `digest`: the same for every worker."""
        if self._endpoints is None or self._endpoints_at != self.store.applied_index:
            self._endpoints_at = self.store.applied_index
            self._endpoints = service_endpoints.compute(self.store.conn, self._discovery)
        return self._endpoints

    def _check_active(self) -> None:
        if self._stopped:
            raise UnavailableError("this manager is no longer the leader; retry")

    # -- heartbeats -----------------------------------------------------------------------------------

    def touch(self, node: str) -> None:
        """Record that `node` was heard from now."""
        self._last_seen[node] = self.clock()

    def connected(self, node: str) -> bool:
        """Heard from this term, within the grace: a log request for it will be picked up."""
        seen = self._last_seen.get(node)
        return seen is not None and self.clock() - seen <= self.settings.node_down_grace_s

    def forget(self, node: str) -> None:
        """The node was removed."""
        self._last_seen.pop(node, None)
        self._endpoints_due.pop(node, None)
        self._volumes_reported.pop(node, None)
        self._volumes_retry_at.pop(node, None)
        self.logs.end_node(node, "its node was removed")

    async def check_liveness(self) -> None:
        """Write down every ready worker not heard from for node_down_grace_s (since this leader started
        at the earliest). The writes run in the background; one per node at a time."""
        if self._stopped:
            return
        now = self.clock()
        grace = self.settings.node_down_grace_s
        for node in queries.nodes(self.store.conn, "worker"):
            name = node["name"]
            if node["state"] != "ready" or name in self._node_writes:
                continue
            seen = self._last_seen.get(name, self._since)
            if now - max(seen, self._since) > grace:
                silent = now - seen if name in self._last_seen else now - self._since
                self._node_writes[name] = asyncio.create_task(
                    self._write_down(name, silent), name=f"node-down {name}"
                )

    async def _write_down(self, name: str, silent_s: float) -> None:
        try:
            await self.propose(c.SetNodeState(name, "down", self.wall()))
            log.warning("worker %s written down: not heard from for %.1f s", name, silent_s)
            if self.metrics is not None:
                self.metrics.nodes_down.inc()
            self.logs.end_node(name, "its node went down")
        except WarrenError as exc:
            log.warning("could not write worker %s down (retrying): %s", name, exc)
        finally:
            self._node_writes.pop(name, None)

    async def _liveness_loop(self) -> None:
        period = self.settings.heartbeat_period_s / 2
        while True:
            await asyncio.sleep(period)
            try:
                await self.check_liveness()
            except Exception:  # a task boundary: log and keep checking
                log.exception("liveness check failed")

    # -- sessions -------------------------------------------------------------------------------------

    async def session(
        self,
        node: str,
        known: str | None,
        report: NodeReport | None,
        known_endpoints: str | None | UnsetType = UNSET,
    ) -> dict[str, Any]:
        """The answer to one session call (held as the protocol says). The caller checked the secret.
        `known_endpoints`: the digest of the endpoints the worker has (None: none); UNSET when it did
        not ask for them (an older worker), which is never woken for them nor sent them."""
        self._check_active()
        self.touch(node)
        await self._back_up(node, report)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.hold_s
        removing = set(self.removals(node))  # what this call would answer now
        wants_endpoints = not isinstance(known_endpoints, UnsetType)
        endpoints_due = self._endpoints_due.get(node, -math.inf)
        self.held += 1
        try:
            while True:
                changed = self._changed  # taken before reading, so no change is missed
                self._check_active()
                digest = self.digest(node)
                now = loop.time()
                if digest != known or self.logs.has_pending(node) or now >= deadline:
                    break
                if wants_endpoints and now >= endpoints_due and self.endpoints().digest != known_endpoints:
                    break
                if not removing.issuperset(self.removals(node)):
                    break
                # An endpoints change seen before it is due is looked at again when it is.
                wake_at = deadline
                if wants_endpoints and now < endpoints_due:
                    wake_at = min(deadline, endpoints_due)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout_at(wake_at):
                        await changed.wait()
        finally:
            self.held -= 1
        self.touch(node)
        docs = None
        values = None
        contents = None
        if digest != known:
            docs = queries.assignments(self.store.conn, node)
            digest = queries.assignments_digest(docs)  # the digest of exactly what is sent
            values = self._secrets_for(node, docs)
            # Like secrets: the configs of this node's tasks that should run, and no other.
            contents = config_contents.for_delivery(
                self.store.conn, config_contents.names_used(docs), node=node
            )
        endpoints = None
        if wants_endpoints:
            current = self.endpoints()
            if current.digest != known_endpoints:
                endpoints = current.to_doc()
                self._endpoints_due[node] = loop.time() + self.settings.endpoints_interval_s
        return {
            "heartbeat_period_s": self.settings.heartbeat_period_s,
            "digest": digest,
            "assignments": docs,
            "log_requests": [r.to_doc() for r in self.logs.take_pending(node)],
            "secrets": values,
            "configs": contents,
            "remove_volumes": self.removals(node),
            "volumes_digest": inventory_digest(volumes.of_node(self.store.conn, node)),
            "endpoints": endpoints,
        }

    def _secrets_for(self, node: str, docs: list[dict[str, Any]]) -> dict[str, str]:
        """The values of the secrets used by the tasks in `docs` (this node's, that should run): a
        worker is given no other secret."""
        names = secret_values.names_used(docs)
        if not names:
            return {}
        if self.data_key is None:
            log.error("tasks on %s need secrets, but this manager has no data key to open them", node)
            return {}
        return secret_values.open_for_delivery(self.store.conn, self.data_key, names, node=node)

    async def _back_up(self, node: str, report: NodeReport | None) -> None:
        """Mark a down node ready again, and record a changed address, labels or resources."""
        doc = queries.node(self.store.conn, node)
        if doc is None:
            raise UnauthorizedError(f"no node named {node!r}")
        writes: list[c.Command] = []
        changes = None if report is None else report.changes(doc)
        if changes is not None:
            writes.append(c.UpdateNode(node, *changes, self.wall()))
        if doc["state"] == "down":
            writes.append(c.SetNodeState(node, "ready", self.wall()))
        await self._record_volumes(node, report)
        if not writes:
            return
        pending = self._node_writes.get(node)
        if pending is not None:
            await asyncio.gather(pending, return_exceptions=True)
        await asyncio.gather(*(self.propose(w) for w in writes))
        if doc["state"] == "down":
            log.info("worker %s is back: ready", node)

    async def _record_volumes(self, node: str, report: NodeReport | None) -> None:
        """Write the node's reported volumes if they differ from the stored ones. A failed write (no
        quorum; a manager too old for the command) is logged and tried again on the node's next call.
        A first call after a start (it carries the resources) without volumes says the worker has none
        (docs/worker-protocol.md)."""
        if report is not None and (report.volumes is not None or report.resources is not None):
            listed = sorted({(str(v["name"]), str(v["driver"])) for v in report.volumes or []})
            if self._volumes_reported.get(node) != listed:  # a new list: written now
                self._volumes_reported[node] = listed
                self._volumes_retry_at.pop(node, None)
        reported = self._volumes_reported.get(node)
        if reported is None or self.clock() < self._volumes_retry_at.get(node, -math.inf):
            return
        if reported == volumes.of_node(self.store.conn, node):
            del self._volumes_reported[node]
            return
        records = [c.VolumeRecord(name, driver) for name, driver in reported]  # type: ignore[arg-type]
        try:
            await self.propose(c.NodeVolumes(node, records, self.wall()))
        except WarrenError as exc:
            retry_s = self.settings.volume_report_retry_s
            self._volumes_retry_at[node] = self.clock() + retry_s
            log.warning("could not record the volumes of %s (trying again in %g s): %s", node, retry_s, exc)
            return
        self._volumes_reported.pop(node, None)
        self._volumes_retry_at.pop(node, None)

    def wake(self) -> None:
        """Re-check every held session now (a log request was queued)."""
        self._on_change()

    # -- task status ----------------------------------------------------------------------------------

    async def report_status(self, node: str, updates: list[c.TaskStatus]) -> None:
        """Merge `updates` (from worker `node`) into the next batch and wait until it has committed."""
        self._check_active()
        self.touch(node)
        if not updates:
            return
        if self._batch is None:
            self._batch = _Batch()
            self._batch.done.add_done_callback(_consume)
        batch = self._batch
        new = len({u.task_id for u in updates if (node, u.task_id) not in batch.updates})
        pending = batch.per_node.get(node, 0)
        limit = self.settings.status_pending_per_node_max
        if new and pending + new > limit:
            raise UnavailableError(
                f"{pending} status updates of {node} already wait to be committed (at most {limit}); "
                "retry after they are"
            )
        batch.per_node[node] = pending + new
        for update in updates:
            # A worker only reports its own tasks: apply skips an update for a task on another node.
            update = msgspec.structs.replace(update, node=node)
            key = (node, update.task_id)
            old = batch.updates.get(key)
            # Latest wins, but never a step back: within a batch apply would skip it anyway.
            if old is None or RANK.get(update.state, 0) >= RANK.get(old.state, 0):
                batch.updates[key] = _keeping_ports(update, old)
        self._flush_wanted.set()
        await asyncio.shield(batch.done)

    async def _propose_statuses(self, items: list[c.TaskStatus]) -> None:
        """Propose one SetTaskStatuses. Ports need every manager at PUBLISH_MODE_SINCE; a manager of an
        older Warren (a rolling upgrade) refuses them, and the states, which it applies, must not wait
        for its upgrade: they are proposed again without the ports."""
        try:
            await self.propose(c.SetTaskStatuses(items))
        except ConflictError:
            if not any(not isinstance(u.ports, UnsetType) for u in items):
                raise
            log.warning("a manager runs an older Warren: %d task statuses committed without their "
                        "ingress ports (no ingress traffic reaches those tasks until it is upgraded)",
                        len(items))
            await self.propose(c.SetTaskStatuses([msgspec.structs.replace(u, ports=UNSET) for u in items]))

    async def _flush_loop(self) -> None:
        while True:
            await self._flush_wanted.wait()
            self._flush_wanted.clear()
            batch, self._batch = self._batch, None
            if batch is None:
                continue
            try:
                items = list(batch.updates.values())
                size = self.settings.status_batch_max
                for start in range(0, len(items), size):
                    await self._propose_statuses(items[start : start + size])
                if self.metrics is not None:
                    self.metrics.status_batches.observe(len(items))
            except WarrenError as exc:
                log.warning("task status batch of %d updates not committed: %s", len(batch.updates), exc)
                batch.done.set_exception(exc)
            except asyncio.CancelledError:
                batch.done.set_exception(UnavailableError("this manager is no longer the leader"))
                raise
            else:
                batch.done.set_result(None)
            if self.settings.status_flush_interval_s > 0:
                await asyncio.sleep(self.settings.status_flush_interval_s)


def _keeping_ports(update: c.TaskStatus, old: c.TaskStatus | None) -> c.TaskStatus:
    """`update` replacing `old` (same task) in a batch: ports `old` reported for the same container
    stay, unless `update` reports its own (a health report after the running one carries none)."""
    if (
        old is None
        or isinstance(old.ports, UnsetType)
        or not isinstance(update.ports, UnsetType)
        or (update.container_id is not None and update.container_id != old.container_id)
    ):
        return update
    return msgspec.structs.replace(update, ports=old.ports)
