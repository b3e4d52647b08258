"""Where every service's replicas can be reached: the `endpoints` the leader sends each worker with its
session answer (docs/worker-protocol.md), from which the worker answers names (service discovery) and
forwards its ingress ports (the `ingress` section: published port -> the replicas that take its
connections, at the host port their worker reported).

The same document for every worker: computed from the store once per applied index (the dispatcher
caches it), never once per held session. A service with discovery off is left out of `services`; one
with no running task is listed with empty lists (its name exists, with no address yet). Every ingress
port of every service is in `ingress`, whether or not its discovery is on, with no backend until a
replica is ready.
"""

from __future__ import annotations

import hashlib
import ipaddress
import sqlite3
from dataclasses import dataclass, field
from typing import Any, Final

import orjson

from warren.errors import ConfigError
from warren.formats import split_host_port
from warren.spec.ports import MAX_INGRESS_BACKENDS, MAX_INGRESS_PORTS, MAX_SERVICE_TASKS
from warren.store import queries

# Every task that runs and should (a task being stopped gets no new connection), with its node's
# address and state and whether its spec has a health check; ordered so that the digest is stable.
_RUNNING_SQL: Final = """
SELECT t.service_id, t.id, t.slot, t.node, t.health, json_extract(t.spec, '$.health') IS NOT NULL AS checked,
       n.api_addr, n.state AS node_state, t.ports
FROM tasks t JOIN nodes n ON n.name = t.node
WHERE t.state = 'running' AND t.desired_state = 'running'
ORDER BY t.service_id, t.slot, t.node, t.id
"""


@dataclass(frozen=True, slots=True)
class Endpoints:
    """`services` (service name -> {"healthy": [addr...], "tasks": [...]}), `ingress` (published port,
    a decimal string -> {"service": name, "backends": [{"addr", "port", "task_id", "node"}...]}) and
    the digest of both."""

    digest: str
    services: dict[str, dict[str, Any]]
    ingress: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_doc(self) -> dict[str, Any]:
        return {"digest": self.digest, "services": self.services, "ingress": self.ingress}


# What compute keeps of each service between calls: (version, discovery on, its ingress ports).
ServiceView = tuple[int, bool, tuple[int, ...]]


def digest_of(services: dict[str, dict[str, Any]], ingress: dict[str, dict[str, Any]] | None = None) -> str:
    """A short digest of the endpoints (sha256 of their canonical JSON): any change to `services` or
    `ingress` gives another."""
    doc: dict[str, Any] = {"services": services, "ingress": ingress or {}}
    return hashlib.sha256(orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]


def host_of(addr: str | None) -> str | None:
    """The host part of a worker's stored address ("10.0.0.2", "10.0.0.2:7070"); None if it has none
    (or one that does not parse: it was checked when recorded, so this is a damaged row)."""
    if not addr:
        return None
    try:
        return split_host_port(addr, field="addr", default_port=0)[0]
    except ConfigError:
        return None


def compute(conn: sqlite3.Connection, seen: dict[str, ServiceView] | None = None) -> Endpoints:
    """The endpoints of every service with discovery on, and the ingress table of every service with
    ingress publishes.

    `seen` (service id -> ServiceView, kept by the caller between calls and brought up to date here)
    spares decoding every service's spec at every commit: only a changed one is read again.

    A task is listed when it is running and should be, on a node with an address; it is healthy when
    its health is `healthy`, or its spec has no health check, and its node is not written down (a
    cut-off worker's tasks still read `running` until they are replaced). `healthy` (the list) is the
    distinct addresses of the healthy tasks, sorted. A service lists at most MAX_SERVICE_TASKS tasks
    and healthy addresses (`_listed`). A healthy task is a backend of each ingress port
    of its service (its current spec's) for which its worker reported a host port, if its node's
    address is an IP address (the proxies connect to it; a host name is left out); backends are sorted
    by node and task ID.
    """
    names: dict[str, str] = {}  # service id -> name, for the services with discovery on
    published: dict[str, tuple[str, tuple[int, ...]]] = {}  # service id -> (name, ingress ports)
    known = {} if seen is None else seen
    current: set[str] = set()
    for service_id, name, version in conn.execute("SELECT id, name, version FROM services ORDER BY name"):
        current.add(service_id)
        cached = known.get(service_id)
        if cached is None or cached[0] != version:
            text = conn.execute("SELECT spec FROM services WHERE id = ?", (service_id,)).fetchone()[0]
            spec = queries.stored_spec(text)
            # A spec that no longer decodes: its tasks may still run, so its name keeps answering
            # (but nothing says which of its ports are ingress ones).
            ports = () if spec is None else tuple(sorted({p.host for p in spec.publish if p.ingress}))
            cached = known[service_id] = (version, spec is None or spec.discoverable, ports)
        if cached[1]:
            names[service_id] = name
        if cached[2]:
            published[service_id] = (name, cached[2])
    for gone in known.keys() - current:
        del known[gone]
    services: dict[str, dict[str, Any]] = {name: {"healthy": [], "tasks": []} for name in names.values()}
    healthy: dict[str, set[str]] = {name: set() for name in names.values()}
    ingress = _ingress_ports(published)
    for row in conn.execute(_RUNNING_SQL):
        service_id, task_id, slot, node, health, checked, api_addr, node_state, ports = tuple(row)
        addr = host_of(api_addr)
        if addr is None:
            continue
        ok = (health == "healthy" or not checked) and node_state != "down"
        name = names.get(service_id)
        if name is not None:
            services[name]["tasks"].append(
                {"task_id": task_id, "slot": slot, "node": node, "addr": addr, "healthy": ok}
            )
            if ok:
                healthy[name].add(addr)
        if ok and service_id in published and ports and _is_ip(addr):
            for key, port in _reported(ports).items():
                route = ingress.get(key)
                if route is not None and route["service"] == published[service_id][0]:
                    route["backends"].append({"addr": addr, "port": port, "task_id": task_id, "node": node})
    for name, addrs in healthy.items():
        services[name]["healthy"] = sorted(addrs)[:MAX_SERVICE_TASKS]
        services[name]["tasks"] = _listed(services[name]["tasks"])
    for route in ingress.values():
        backends = sorted(route["backends"], key=lambda b: (b["node"], b["task_id"]))
        route["backends"] = backends[:MAX_INGRESS_BACKENDS]
    return Endpoints(digest_of(services, ingress), services, ingress)


def _listed(tasks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """At most MAX_SERVICE_TASKS of a service's `tasks` (the bound a worker holds the leader to; a
    service past it would otherwise have its whole table refused by every worker): the first task at
    each address, so that `tasks.NAME` still answers every address, then the others in order, all
    kept in their order."""
    if len(tasks) <= MAX_SERVICE_TASKS:
        return tasks
    keep: set[int] = set()
    seen: set[str] = set()
    for i, task in enumerate(tasks):
        if task["addr"] not in seen and len(keep) < MAX_SERVICE_TASKS:
            seen.add(task["addr"])
            keep.add(i)
    for i in range(len(tasks)):
        if len(keep) >= MAX_SERVICE_TASKS:
            break
        keep.add(i)
    return [task for i, task in enumerate(tasks) if i in keep]


def _ingress_ports(published: dict[str, tuple[str, tuple[int, ...]]]) -> dict[str, dict[str, Any]]:
    """The ingress table without backends, by published port (in port order, at most
    MAX_INGRESS_PORTS). The API refuses a port two services publish; should the store still hold one
    (a race of two creates, say), the service first by name keeps it, on every manager alike."""
    owner: dict[int, str] = {}
    for name, ports in sorted(published.values()):
        for port in ports:
            owner.setdefault(port, name)
    return {
        str(port): {"service": owner[port], "backends": []}
        for port in sorted(owner)[:MAX_INGRESS_PORTS]
    }


def _reported(text: object) -> dict[str, int]:
    """A task's stored ports (tasks.ports, checked when reported), read back defensively: what is not
    {"P": port} is left out."""
    try:
        doc = orjson.loads(text) if isinstance(text, str | bytes) else None
    except orjson.JSONDecodeError:
        return {}
    if not isinstance(doc, dict):
        return {}
    return {
        key: port for key, port in doc.items()
        if isinstance(port, int) and not isinstance(port, bool) and 1 <= port <= 65535
    }


def _is_ip(addr: str) -> bool:
    try:
        ipaddress.ip_address(addr)
    except ValueError:
        return False
    return True
