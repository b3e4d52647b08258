"""Where every service's replicas can be reached: the `endpoints` the leader sends each worker with its
session answer (docs/worker-protocol.md), from which the worker answers names (service discovery).

The same document for every worker: computed from the store once per applied index (the dispatcher
caches it), never once per held session. A service with discovery off is left out; one with no running
task is listed with empty lists (its name exists, with no address yet).
"""

from __future__ import annotations

import hashlib
import sqlite3
from dataclasses import dataclass
from typing import Any, Final

import orjson

from warren.errors import ConfigError
from warren.formats import split_host_port
from warren.store import queries

# Every task that runs and should (a task being stopped gets no new connection), with its node's
# address and state and whether its spec has a health check; ordered so that the digest is stable.
_RUNNING_SQL: Final = """
SELECT t.service_id, t.id, t.slot, t.node, t.health, json_extract(t.spec, '$.health') IS NOT NULL AS checked,
       n.api_addr, n.state AS node_state
FROM tasks t JOIN nodes n ON n.name = t.node
WHERE t.state = 'running' AND t.desired_state = 'running'
ORDER BY t.service_id, t.slot, t.node, t.id
"""


@dataclass(frozen=True, slots=True)
class Endpoints:
    """`services` (service name -> {"healthy": [addr...], "tasks": [...]}) and its digest."""

    digest: str
    services: dict[str, dict[str, Any]]

    def to_doc(self) -> dict[str, Any]:
        return {"digest": self.digest, "services": self.services}


def digest_of(services: dict[str, dict[str, Any]]) -> str:
    """A short digest of the services' endpoints (sha256 of their canonical JSON)."""
    return hashlib.sha256(orjson.dumps(services, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]


def host_of(addr: str | None) -> str | None:
    """The host part of a worker's stored address ("10.0.0.2", "10.0.0.2:7070"); None if it has none
    (or one that does not parse: it was checked when recorded, so this is a damaged row)."""
    if not addr:
        return None
    try:
        return split_host_port(addr, field="addr", default_port=0)[0]
    except ConfigError:
        return None


def compute(conn: sqlite3.Connection, seen: dict[str, tuple[int, bool]] | None = None) -> Endpoints:
    """The endpoints of every service with discovery on.

    `seen` (service id -> (version, discovery on), kept by the caller between calls and brought up to
    date here) spares decoding every service's spec at every commit: only a changed one is read again.

    A task is listed when it is running and should be, on a node with an address; it is healthy when
    its health is `healthy`, or its spec has no health check, and its node is not written down (a
    cut-off worker's tasks still read `running` until they are replaced). `healthy` (the list) is the
    distinct addresses of the healthy tasks, sorted.
    """
    names: dict[str, str] = {}  # service id -> name, for the services with discovery on
    known = {} if seen is None else seen
    current: set[str] = set()
    for service_id, name, version in conn.execute("SELECT id, name, version FROM services"):
        current.add(service_id)
        cached = known.get(service_id)
        if cached is None or cached[0] != version:
            text = conn.execute("SELECT spec FROM services WHERE id = ?", (service_id,)).fetchone()[0]
            spec = queries.stored_spec(text)
            # A spec that no longer decodes: its tasks may still run, so its name keeps answering.
            cached = known[service_id] = (version, spec is None or spec.discoverable)
        if cached[1]:
            names[service_id] = name
    for gone in known.keys() - current:
        del known[gone]
    services: dict[str, dict[str, Any]] = {name: {"healthy": [], "tasks": []} for name in names.values()}
    healthy: dict[str, set[str]] = {name: set() for name in names.values()}
    for row in conn.execute(_RUNNING_SQL):
        service_id, task_id, slot, node, health, checked, api_addr, node_state = tuple(row)
        name = names.get(service_id)
        addr = host_of(api_addr)
        if name is None or addr is None:
            continue
        ok = (health == "healthy" or not checked) and node_state != "down"
        services[name]["tasks"].append(
            {"task_id": task_id, "slot": slot, "node": node, "addr": addr, "healthy": ok}
        )
        if ok:
            healthy[name].add(addr)
    for name, addrs in healthy.items():
        services[name]["healthy"] = sorted(addrs)
    return Endpoints(digest_of(services), services)
