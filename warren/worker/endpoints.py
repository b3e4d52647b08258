"""The cluster's service endpoints as this worker last heard them (the session answer's `endpoints`):
checked byte by byte, kept in memory, in `endpoints.json` (a worker restarted while cut off still
answers names and forwards its ingress ports) and as a hosts-style file for process tasks
(`WARREN_HOSTS`). The `ingress` section is the table of the worker's ingress proxy
(warren.worker.ingress): published port -> the replicas a connection may go to.

The leader sends the whole table when its digest differs from the one the worker says it holds
(`known_endpoints`); `null` means "yours is current". Names are DNS labels (lower-cased here: lookups
are case-insensitive), addresses IP addresses; counts are bounded so a bad answer cannot make the
worker build an unbounded table.
"""

from __future__ import annotations

import dataclasses
import functools
import ipaddress
import logging
import os
import re
from collections.abc import Mapping
from typing import Any

import orjson

from warren.durable import read_if_exists, write_atomically
from warren.errors import InvalidError
from warren.spec.ports import MAX_SERVICE_TASKS
from warren.worker.ingress import MAX_PORT, Backend

log = logging.getLogger(__name__)

# Bounds of one endpoints table (a few small machines: far above what a real cluster sends).
MAX_SERVICES = 4096
MAX_TASKS_PER_SERVICE = MAX_SERVICE_TASKS  # the leader lists no more (warren.spec.ports)
MAX_DIGEST_LEN = 128
MAX_ID_LEN = 128
MAX_INGRESS_PORTS = 1024
MAX_BACKENDS_PER_PORT = 1024
# The zone the names live in: NAME and NAME.warren are the same service.
ZONE = "warren"
# Under the worker's data dir.
ENDPOINTS_FILE = "endpoints.json"
HOSTS_FILE = "hosts"

_LABEL = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
_HOST_PART = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOST_NAME = re.compile(rf"^{_HOST_PART}(?:\.{_HOST_PART})*$")
_PORT_KEY = re.compile(r"[1-9][0-9]{0,4}")  # fullmatch: "$" would let a final LF by


@dataclasses.dataclass(frozen=True, slots=True)
class TaskEndpoint:
    task_id: str
    slot: int | None
    node: str
    addr: str
    healthy: bool


@dataclasses.dataclass(frozen=True, slots=True)
class ServiceEndpoints:
    # Addresses of the service's healthy, running replicas (each once, in the leader's order).
    healthy: tuple[str, ...]
    # Every replica the leader listed (tasks.NAME), healthy or not.
    tasks: tuple[TaskEndpoint, ...]

    @property
    def task_addrs(self) -> tuple[str, ...]:
        """Every replica's address, each once."""
        return tuple(dict.fromkeys(t.addr for t in self.tasks))


@dataclasses.dataclass(frozen=True, slots=True)
class IngressRoute:
    # The service that publishes the port, and its replicas a connection may be forwarded to (running,
    # healthy, on a node that is up; in the leader's order).
    service: str
    backends: tuple[Backend, ...]


@dataclasses.dataclass(frozen=True, slots=True)
class Endpoints:
    digest: str
    services: Mapping[str, ServiceEndpoints]
    # Published ingress port -> its route; empty from a leader that sends none (an older one).
    ingress: Mapping[int, IngressRoute] = dataclasses.field(default_factory=dict)

    def ingress_routes(self) -> dict[int, tuple[Backend, ...]]:
        """What the ingress proxy takes: published port -> backends."""
        return {port: route.backends for port, route in self.ingress.items()}


def is_label(name: str) -> bool:
    """A DNS label (RFC 1123: letters, digits, inner hyphens, 1-63 characters), any case."""
    return bool(_LABEL.match(name.lower())) if name.isascii() else False


def parse(doc: Any, *, field: str = "endpoints") -> Endpoints:
    """The endpoints of a session answer (or of endpoints.json); InvalidError naming the field."""
    if not isinstance(doc, Mapping):
        raise InvalidError(f"{field}: expected an object")
    digest = doc.get("digest")
    if not isinstance(digest, str) or not digest or len(digest) > MAX_DIGEST_LEN or not digest.isprintable():
        raise InvalidError(f"{field}.digest: expected a non-empty string of at most {MAX_DIGEST_LEN} "
                           "characters")
    services = doc.get("services")
    if not isinstance(services, Mapping):
        raise InvalidError(f"{field}.services: expected an object")
    if len(services) > MAX_SERVICES:
        raise InvalidError(f"{field}.services: at most {MAX_SERVICES} services, got {len(services)}")
    out: dict[str, ServiceEndpoints] = {}
    for name, entry in services.items():
        where = f"{field}.services.{str(name)[:80]!r}"
        if not isinstance(name, str) or not is_label(name):
            raise InvalidError(f"{where}: a service name must be a DNS label (letters, digits, inner "
                               "hyphens, at most 63 characters)")
        if name.lower() in out:
            raise InvalidError(f"{where}: the same name twice (names are case-insensitive)")
        out[name.lower()] = _service(entry, where)
    return Endpoints(digest, out, _ingress(doc.get("ingress", {}), f"{field}.ingress"))


def _ingress(doc: Any, where: str) -> dict[int, IngressRoute]:
    if not isinstance(doc, Mapping):
        raise InvalidError(f"{where}: expected an object")
    if len(doc) > MAX_INGRESS_PORTS:
        raise InvalidError(f"{where}: at most {MAX_INGRESS_PORTS} ports, got {len(doc)}")
    routes: dict[int, IngressRoute] = {}
    for key, entry in doc.items():
        here = f"{where}.{str(key)[:80]!r}"
        if not isinstance(key, str) or not _PORT_KEY.fullmatch(key) or int(key) > MAX_PORT:
            raise InvalidError(f"{here}: a published port must be a decimal number from 1 to {MAX_PORT}")
        if not isinstance(entry, Mapping):
            raise InvalidError(f"{here}: expected an object")
        service = entry.get("service")
        if not isinstance(service, str) or not is_label(service):
            raise InvalidError(f"{here}.service: expected a service name (a DNS label)")
        backends = entry.get("backends")
        if not isinstance(backends, list):
            raise InvalidError(f"{here}.backends: expected a list")
        if len(backends) > MAX_BACKENDS_PER_PORT:
            raise InvalidError(f"{here}.backends: at most {MAX_BACKENDS_PER_PORT} backends, got "
                               f"{len(backends)}")
        routes[int(key)] = IngressRoute(
            service.lower(), tuple(_backend(b, f"{here}.backends[{i}]") for i, b in enumerate(backends))
        )
    return routes


def _backend(doc: Any, where: str) -> Backend:
    if not isinstance(doc, Mapping):
        raise InvalidError(f"{where}: expected an object")
    task_id, node = (_id(doc.get(key), f"{where}.{key}") for key in ("task_id", "node"))
    addr = doc.get("addr")
    try:
        addr = str(ipaddress.ip_address(addr)) if isinstance(addr, str) and len(addr) <= 45 else None
    except ValueError:
        addr = None
    if addr is None:
        raise InvalidError(f"{where}.addr: expected an IP address")
    port = doc.get("port")
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= MAX_PORT:
        raise InvalidError(f"{where}.port: expected a port from 1 to {MAX_PORT}")
    return Backend(addr, port, task_id, node)


def _id(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value or len(value) > MAX_ID_LEN or not value.isprintable():
        raise InvalidError(f"{where}: expected a non-empty string of at most {MAX_ID_LEN} characters")
    return value


def _service(entry: Any, where: str) -> ServiceEndpoints:
    if not isinstance(entry, Mapping):
        raise InvalidError(f"{where}: expected an object")
    healthy = entry.get("healthy")
    if not isinstance(healthy, list):
        raise InvalidError(f"{where}.healthy: expected a list of addresses")
    if len(healthy) > MAX_TASKS_PER_SERVICE:
        raise InvalidError(f"{where}.healthy: at most {MAX_TASKS_PER_SERVICE} addresses")
    checked = [_addr(a, f"{where}.healthy[{i}]") for i, a in enumerate(healthy)]
    addrs = tuple(dict.fromkeys(a for a in checked if a is not None))
    tasks = entry.get("tasks", [])
    if not isinstance(tasks, list):
        raise InvalidError(f"{where}.tasks: expected a list")
    if len(tasks) > MAX_TASKS_PER_SERVICE:
        raise InvalidError(f"{where}.tasks: at most {MAX_TASKS_PER_SERVICE} tasks")
    listed = [_task(t, f"{where}.tasks[{i}]") for i, t in enumerate(tasks)]
    return ServiceEndpoints(addrs, tuple(t for t in listed if t is not None))


def _task(doc: Any, where: str) -> TaskEndpoint | None:
    if not isinstance(doc, Mapping):
        raise InvalidError(f"{where}: expected an object")
    ids = [_id(doc.get(key), f"{where}.{key}") for key in ("task_id", "node")]
    slot = doc.get("slot")
    if slot is not None and (isinstance(slot, bool) or not isinstance(slot, int) or not 0 <= slot < 2**31):
        raise InvalidError(f"{where}.slot: expected a non-negative integer or null")
    healthy = doc.get("healthy")
    if not isinstance(healthy, bool):
        raise InvalidError(f"{where}.healthy: expected true or false")
    addr = _addr(doc.get("addr"), f"{where}.addr")
    return None if addr is None else TaskEndpoint(ids[0], slot, ids[1], addr, healthy)


def _addr(value: Any, where: str) -> str | None:
    """The IP address; None for a host name (a worker that advertises one: it cannot be an A record,
    so that replica is left out, said at DEBUG); InvalidError for anything else."""
    if not isinstance(value, str) or len(value) > 253:
        raise InvalidError(f"{where}: expected an IP address")
    ip = _ip_text(value)
    if ip is not None:
        return ip
    if _HOST_NAME.match(value) and not value.replace(".", "").isdigit():
        log.debug("%s: %s is a host name, not an address: left out of the answers", where, value)
        return None
    raise InvalidError(f"{where}: {value[:45]!r} is not an IP address")


@functools.lru_cache(maxsize=4096)
def _ip_text(value: str) -> str | None:
    """The IP address `value` names, in its canonical form; None if it names none. Remembered (a few
    addresses, a worker's each, repeat across a table's thousand tasks and every table after it)."""
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        return None


def hosts_text(endpoints: Endpoints | None) -> str:
    """The hosts-style file of `endpoints`: `ADDR NAME NAME.warren` per healthy address, then
    `ADDR tasks.NAME tasks.NAME.warren` per replica (a hosts file lists a name once per address)."""
    lines = ["# Warren service names (written by the worker; rewritten when the cluster changes)"]
    if endpoints is not None:
        for name in sorted(endpoints.services):
            entry = endpoints.services[name]
            lines += [f"{addr} {name} {name}.{ZONE}" for addr in entry.healthy]
            lines += [f"{addr} tasks.{name} tasks.{name}.{ZONE}" for addr in entry.task_addrs]
    return "\n".join(lines) + "\n"


def to_doc(endpoints: Endpoints) -> dict[str, Any]:
    """The wire form again (what endpoints.json keeps)."""
    return {
        "digest": endpoints.digest,
        "services": {
            name: {
                "healthy": list(entry.healthy),
                "tasks": [dataclasses.asdict(t) for t in entry.tasks],
            }
            for name, entry in endpoints.services.items()
        },
        "ingress": {
            str(port): {"service": route.service, "backends": [dataclasses.asdict(b) for b in route.backends]}
            for port, route in endpoints.ingress.items()
        },
    }


class EndpointsTable:
    """The endpoints this worker holds, kept in `data_dir` (endpoints.json and the hosts file)."""

    def __init__(self, data_dir: str) -> None:
        self.data_dir = data_dir
        self.hosts_path = os.path.join(data_dir, HOSTS_FILE)
        self._path = os.path.join(data_dir, ENDPOINTS_FILE)
        self.current: Endpoints | None = None

    @property
    def digest(self) -> str | None:
        return None if self.current is None else self.current.digest

    def load(self) -> None:
        """Take what the last run kept (a damaged file is set aside: the leader sends the table again),
        and write the hosts file (there is one, possibly empty, from the start)."""
        try:
            os.makedirs(self.data_dir, exist_ok=True)
            raw = read_if_exists(self._path)
            if raw is not None:
                self.current = parse(orjson.loads(raw), field=self._path)
        except (OSError, orjson.JSONDecodeError, InvalidError) as exc:
            log.warning("ignoring %s (the managers send the endpoints again): %s", self._path, exc)
            self.current = None
        self._write_hosts()

    def received(self, doc: Any) -> bool:
        """A session answer's `endpoints` (None: current). False if it was refused (logged)."""
        if doc is None:
            return True
        try:
            endpoints = parse(doc)
        except InvalidError as exc:
            log.warning("ignoring the endpoints a manager sent: %s", exc)
            return False
        self.current = endpoints
        # Not fsynced (here and the hosts file): a new table comes with every change of the cluster,
        # and after a crash of the machine the managers send the current one again; the fsyncs would
        # cost ~7 ms of the event loop per change.
        # The document as received, once it parsed: the same table when read back (a dict from JSON;
        # rebuilding it from the parsed one cost as much as parsing it).
        saved = doc if isinstance(doc, dict) else to_doc(endpoints)
        try:
            write_atomically(self._path, orjson.dumps(saved), sync=False)
        except OSError as exc:  # memory still answers; only a restart while cut off would miss them
            log.warning("cannot keep the endpoints in %s: %s", self._path, exc)
        self._write_hosts()
        return True

    def _write_hosts(self) -> None:
        try:
            write_atomically(self.hosts_path, hosts_text(self.current).encode(), sync=False)
            os.chmod(self.hosts_path, 0o644)  # read by tasks that may run as another user
        except OSError as exc:
            log.warning("cannot write the hosts file %s: %s", self.hosts_path, exc)
