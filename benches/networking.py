"""Scenario `networking`: names, the ingress proxy and Docker's networking side by side.

1. Name resolution (`dns`): one manager and one process-runtime worker whose DNS server is put on a known
   port (`worker start --dns-addr 127.0.0.1:PORT`, the address a process task gets in WARREN_DNS); a
   service `api` of 3 replicas; dnspython queries `api`, `tasks.api` and `nosuch.warren` (answered by
   the worker itself, NXDOMAIN, nothing forwarded), one at a time. Peer: Docker's embedded DNS
   (127.0.0.11) on a user network, asked for a network alias 3 containers share (Docker's nearest to a
   service name) and a container name, by the same client run in a container's network namespace.
2. Ingress proxy overhead (`proxy`): the backend (benches/netload.py) on loopback, measured direct and
   through one IngressProxy (warren/worker/ingress.py) in a process of its own; Docker's port publishing
   of a container running the same backend: the container's IP, 127.0.0.1:P (Docker's userland proxy,
   docker-proxy: the kernel does not DNAT loopback) and GATEWAY:P (iptables DNAT), with Docker as
   configured here.
3. Docker Swarm's routing mesh (`swarm`): a single-node swarm, a service with a published port (ingress
   mode) whose replicas each run the backend; through the mesh (127.0.0.1:P) and to one task's
   container address directly.
4. The gap in service after a replica's node is killed (`gap`): benches/ingress_gap.py.

Every path is measured the same way: latency of sequential requests on new connections and on one kept
connection (p50/p99 per request), and requests/s with wrk, 16 keep-alive connections, fixed duration.
Everything started is removed at the end (containers labelled `warren.bench=networking`; the swarm
left if this run made it).
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from benches import ingress_gap, netload
from benches.stats import trial_row
from benches.swarm_peer import Swarm
from benches.workers_bench import _post, fleet
from warren.testing.wait import WaitTimeout, eventually

log = logging.getLogger(__name__)

LABEL = "warren.bench"
LABEL_VALUE = "networking"
BACKEND_PORT = 8080  # the backend's port inside a container's namespace
NEW_EVENT = "connect() → whole answer read (new connection per request, 1 client, sequential)"
KEPT_EVENT = (
    "request sent → whole answer read (one kept connection, 1 client, sequential); "
    "throughput: wrk, C keep-alive connections, fixed duration"
)
DNS_EVENT = "query sent → answer parsed (dnspython stub resolver, UDP, 1 client, sequential)"

# A process in its own session: the IngressProxy under test, on uvloop when the worker would be.
# argv: LISTEN_HOST LISTEN_PORT BACKEND_HOST BACKEND_PORT
PROXY = r"""
import asyncio, sys
from warren.worker.ingress import Backend, IngressProxy
try:
    import uvloop
except ImportError:
    uvloop = None

async def main():
    proxy = IngressProxy(sys.argv[1], connect_timeout_s=1.0, max_connections=4096)
    port = int(sys.argv[2])
    await proxy.update({port: [Backend(sys.argv[3], int(sys.argv[4]), "bench-task", "bench-node")]})
    if port not in proxy.bound():
        print("not bound", flush=True)
        return
    print("ready", flush=True)
    await asyncio.Event().wait()

(uvloop.run if uvloop else asyncio.run)(main())
"""


@dataclass(frozen=True, slots=True)
class NetParams:
    dns_queries: int = 2000  # per name; queries
    requests: int = 2000  # sequential requests per path and connection kind; requests
    connections: int = 16  # wrk's keep-alive connections (C)
    load_s: float = 10.0  # wrk's duration per path; seconds
    replicas: int = 3  # of the Warren `api` service and of the Swarm service
    image: str = "warren-busybox:latest"
    give_up_s: float = 60.0
    mesh_wait_s: float = 15.0  # Swarm's routing mesh to answer after its tasks run; seconds
    gap: ingress_gap.GapParams = ingress_gap.GapParams()

    @classmethod
    def smoke(cls) -> NetParams:
        return cls(
            dns_queries=30,
            requests=50,
            load_s=1.0,
            replicas=2,
            mesh_wait_s=5.0,
            gap=ingress_gap.GapParams.smoke(),
        )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def ingress_unavailable() -> str | None:
    """Why this build cannot run an IngressProxy (None: it can)."""
    if importlib.util.find_spec("warren.worker.ingress") is None:
        return "ingress not available in this build (no warren.worker.ingress)"
    return None


def skipped_row(key: str, what: str, reason: str) -> dict[str, Any]:
    """A row for a measurement that was not taken, saying why (the report shows it; CI accepts it)."""
    return {
        "scenario": "networking",
        "key": key,
        "what": f"{what} — not measured: {reason}",
        "skipped": reason,
    }


def run(base_dir: Path, params: NetParams) -> dict[str, Any]:
    base_dir.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    results: dict[str, Any] = {"wrk": netload.wrk_version()}
    for name, part in (
        ("dns", lambda: dns_rows(base_dir, params, results)),
        ("proxy", lambda: proxy_rows(base_dir, params, results)),
        ("docker", lambda: docker_publish_rows(base_dir, params, results)),
        ("swarm", lambda: swarm_rows(base_dir, params, results)),
        ("gap", lambda: ingress_gap.rows(base_dir, params.gap, ingress_unavailable(), results)),
    ):
        t0 = time.monotonic()
        rows += part()
        results.setdefault("part_wall_s", {})[name] = round(time.monotonic() - t0, 1)
    return {"status": "ok", "error": None, "config": params.as_dict(), "results": results, "rows": rows}


# -- rows -------------------------------------------------------------------------------------------


def path_rows(
    key: str, what: str, host: str, port: int, params: NetParams, results: dict[str, Any]
) -> list[dict[str, Any]]:
    """The two rows of one path: new connections, and a kept connection with wrk's requests/s."""
    new = netload.latencies(host, port, params.requests, kept=False)
    kept = netload.latencies(host, port, params.requests, kept=True)
    rows = [
        trial_row("networking", f"networking/{key}/new", what, NEW_EVENT, new),
        trial_row("networking", f"networking/{key}/kept", what, KEPT_EVENT, kept),
    ]
    reason = netload.wrk_unavailable()
    if reason is None:
        load = netload.wrk(host, port, params.connections, params.load_s)
        results.setdefault("wrk_runs", {})[key] = load
        rows[1]["throughput_per_s"] = load["requests_per_s"]
        if load["socket_errors"] or load["non_2xx"]:
            rows[1]["note"] = f"wrk saw errors: {load['socket_errors']}, non-2xx {load['non_2xx']}"
    else:
        rows[1]["note"] = f"no requests/s: {reason}"
    return rows


def dns_rows(base_dir: Path, params: NetParams, results: dict[str, Any]) -> list[dict[str, Any]]:
    names = ("api", "tasks.api", "nosuch.warren")
    rows: list[dict[str, Any]] = []
    port = netload.free_port()
    with fleet(base_dir / "dns") as f:
        f.add_worker("process", extra=["--dns-addr", f"127.0.0.1:{port}"])
        spec = {"image": "local", "driver": "process", "command": ["sleep", "1000000"], "stop_timeout_s": 1}
        _post(f.addr, "POST", "/v1/services", {"name": "api", "replicas": params.replicas, **spec})
        f.wait_running("api", params.replicas, timeout=params.give_up_s)
        # The table reaches the worker over its session: wait until the name answers.
        eventually(
            lambda: not netload.dns_queries("127.0.0.1", port, ["api"], 1)[1],
            params.give_up_s,
            "the worker's DNS server to answer `api`",
            poll_s=0.2,
        )
        times, errors = netload.dns_queries("127.0.0.1", port, names, params.dns_queries)
    what = f"Warren worker's DNS server, service of {params.replicas} process replicas"
    for name in names:
        row = trial_row(
            "networking",
            f"networking/dns/warren/{name}",
            f"{what}: {name}",
            DNS_EVENT,
            times.get(name, []),
            [errors[name]] if name in errors else None,
        )
        rows.append(row)
    rows += docker_dns_rows(params)
    return rows


def docker_dns_rows(params: NetParams) -> list[dict[str, Any]]:
    """Docker's embedded DNS, asked from a container's network namespace (nsenter) on a user network."""
    import docker

    client = docker.from_env()
    with labelled(client) as made:
        net = client.networks.create(f"nb-dns-{_tag()}", driver="bridge", labels={LABEL: LABEL_VALUE})
        made.append(net.remove)
        for i in range(params.replicas):
            _sleeper(client, made, f"nb-api{i}-{_tag()}", network=net.name, aliases=["api"])
        asker = _sleeper(client, made, f"nb-ask-{_tag()}", network=net.name)
        prefix = netload.nsenter(asker.attrs["State"]["Pid"])
        target = f"nb-api0-{_tag()}"
        times, errors = netload.dns_queries("127.0.0.11", 53, ["api", target], params.dns_queries, prefix)
    what = "Docker embedded DNS (127.0.0.11), user network"
    return [
        trial_row(
            "networking",
            "networking/dns/docker/alias",
            f"{what}: a network alias of {params.replicas} containers",
            DNS_EVENT,
            times.get("api", []),
            [errors["api"]] if "api" in errors else None,
        ),
        trial_row(
            "networking",
            "networking/dns/docker/container",
            f"{what}: a container name",
            DNS_EVENT,
            times.get(target, []),
            [errors[target]] if target in errors else None,
        ),
    ]


def proxy_rows(base_dir: Path, params: NetParams, results: dict[str, Any]) -> list[dict[str, Any]]:
    port = netload.free_port()
    backend = netload.start_backend("127.0.0.1", port, base_dir / "backend.log")
    try:
        rows = path_rows("direct", "backend on loopback, direct", "127.0.0.1", port, params, results)
        reason = ingress_unavailable()
        what = "backend on loopback through one Warren IngressProxy (its own process)"
        if reason is not None:
            return [
                *rows,
                skipped_row("networking/proxy/new", what, reason),
                skipped_row("networking/proxy/kept", what, reason),
            ]
        with ingress_proxy(base_dir, port) as listen:
            rows += path_rows("proxy", what, "127.0.0.1", listen, params, results)
        return rows
    finally:
        netload.stop(backend)


@contextlib.contextmanager
def ingress_proxy(base_dir: Path, backend_port: int) -> Iterator[int]:
    """An IngressProxy process forwarding a free loopback port to 127.0.0.1:backend_port; yields the
    port it listens on."""
    listen = netload.free_port()
    log_path = base_dir / "proxy.log"
    with log_path.open("ab") as err:
        proc = subprocess.Popen(
            [sys.executable, "-c", PROXY, "127.0.0.1", str(listen), "127.0.0.1", str(backend_port)],
            stdout=subprocess.PIPE,
            stderr=err,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        assert proc.stdout is not None
        if proc.stdout.readline().strip() != b"ready":
            raise netload.LoadError(f"the IngressProxy did not start: {log_path.read_text()[-800:]}")
        netload.wait_answers("127.0.0.1", listen)
        yield listen
    finally:
        netload.stop(proc)


def docker_publish_rows(base_dir: Path, params: NetParams, results: dict[str, Any]) -> list[dict[str, Any]]:
    """The backend in a container's namespace: its IP, Docker's userland proxy, iptables DNAT."""
    import docker

    client = docker.from_env()
    with labelled(client) as made:
        net = client.networks.create(f"nb-pub-{_tag()}", driver="bridge", labels={LABEL: LABEL_VALUE})
        made.append(net.remove)
        net.reload()
        gateway = net.attrs["IPAM"]["Config"][0]["Gateway"]
        box = _sleeper(
            client,
            made,
            f"nb-pub-{_tag()}",
            network=net.name,
            ports={f"{BACKEND_PORT}/tcp": [("127.0.0.1", None), (gateway, None)]},
        )
        backend = netload.start_backend(
            "0.0.0.0",
            BACKEND_PORT,
            base_dir / "docker-backend.log",
            netload.nsenter(box.attrs["State"]["Pid"]),
        )
        made.append(lambda: netload.stop(backend))
        ip = box.attrs["NetworkSettings"]["Networks"][net.name]["IPAddress"]
        bindings = {
            b["HostIp"]: int(b["HostPort"])
            for b in box.attrs["NetworkSettings"]["Ports"][f"{BACKEND_PORT}/tcp"]
        }
        results["docker_publish"] = {
            "container_ip": ip,
            "gateway": gateway,
            "bindings": bindings,
            "userland_proxy": _userland_proxy(),
        }
        rows = path_rows(
            "docker/container-ip",
            "container's IP directly (Docker bridge)",
            ip,
            BACKEND_PORT,
            params,
            results,
        )
        for host, key, how in (
            ("127.0.0.1", "docker/userland-proxy", "Docker published port on 127.0.0.1 (docker-proxy)"),
            (gateway, "docker/dnat", "Docker published port on the bridge gateway (iptables DNAT)"),
        ):
            netload.wait_answers(host, bindings[host])
            rows += path_rows(key, how, host, bindings[host], params, results)
        return rows


class _NoMesh(Exception):
    """Swarm's routing mesh cannot be measured here; the message says why."""


def swarm_rows(base_dir: Path, params: NetParams, results: dict[str, Any]) -> list[dict[str, Any]]:
    """Swarm's routing mesh (ingress-mode published port, IPVS) vs one task's container directly."""
    import docker
    from docker.types import EndpointSpec, ServiceMode

    client = docker.from_env()
    name = f"nb-mesh-{_tag()}"
    published = netload.free_port()
    with Swarm(client) as swarm, labelled(client) as made:
        results["swarm"] = {"made_here": swarm.made_here, "docker": client.version().get("Version")}
        service = client.services.create(
            params.image,
            command=["sleep", "1000000"],
            name=name,
            mode=ServiceMode("replicated", replicas=params.replicas),
            endpoint_spec=EndpointSpec(ports={published: BACKEND_PORT}),
            labels={LABEL: LABEL_VALUE},
            stop_grace_period=1_000_000_000,
        )
        swarm.services.append(service)
        from benches.containers import wait_running

        ids = wait_running(client, f"com.docker.swarm.service.name={name}", params.replicas, params.give_up_s)
        direct: str | None = None
        for cid in ids:
            pid = client.api.inspect_container(cid)["State"]["Pid"]
            backend = netload.start_backend(
                "0.0.0.0", BACKEND_PORT, base_dir / "swarm-backend.log", netload.nsenter(pid)
            )
            made.append(lambda backend=backend: netload.stop(backend))  # type: ignore[misc]
            direct = direct or _gwbridge_addr(client, pid)
        what = f"Swarm routing mesh, {params.replicas} replicas, 127.0.0.1:P"
        try:
            if not os.path.exists("/proc/net/ip_vs"):
                raise _NoMesh(
                    "this kernel has no IPVS (/proc/net/ip_vs is missing), with which Swarm's routing mesh "
                    "balances: the engine sets up no ingress"
                )
            try:
                netload.wait_answers("127.0.0.1", published, params.mesh_wait_s)
            except WaitTimeout:
                raise _NoMesh(
                    f"the routing mesh did not answer on 127.0.0.1:{published} within "
                    f"{params.mesh_wait_s:g} s ({_ingress_nat()})"
                ) from None
            rows = path_rows("swarm/mesh", what, "127.0.0.1", published, params, results)
        except _NoMesh as exc:
            rows = [skipped_row(f"networking/swarm/mesh/{k}", what, str(exc)) for k in ("new", "kept")]
        if direct is None:
            rows.append(
                skipped_row(
                    "networking/swarm/task-ip/new",
                    "one task's container directly",
                    "no docker_gwbridge address found in the task's namespace",
                )
            )
        else:
            rows += path_rows(
                "swarm/task-ip",
                "one Swarm task's container directly (docker_gwbridge)",
                direct,
                BACKEND_PORT,
                params,
                results,
            )
        results["swarm"]["task_ip"] = direct
        return rows


# -- Docker helpers ---------------------------------------------------------------------------------


def _tag() -> str:
    import os

    return str(os.getpid())


@contextlib.contextmanager
def labelled(client: Any) -> Iterator[list[Callable[[], object]]]:
    """A list of undo steps run in reverse at exit (errors logged), then every container labelled
    warren.bench=networking removed."""
    made: list[Callable[[], object]] = []
    try:
        yield made
    finally:
        for undo in reversed(made):
            try:
                undo()
            except Exception as exc:  # cleanup goes on whatever one step says
                log.warning("networking cleanup: %s", exc)
        for c in client.api.containers(all=True, filters={"label": f"{LABEL}={LABEL_VALUE}"}):
            with contextlib.suppress(Exception):
                client.api.remove_container(c["Id"], force=True)


def _sleeper(
    client: Any,
    made: list[Callable[[], object]],
    name: str,
    *,
    network: str,
    aliases: list[str] | None = None,
    ports: dict[str, Any] | None = None,
) -> Any:
    """A running `sleep` container (its namespace hosts what we run with nsenter), reloaded."""
    box = client.containers.create(
        "warren-busybox:latest",
        ["sleep", "1000000"],
        name=name,
        labels={LABEL: LABEL_VALUE},
        ports=ports or {},
        network=network,
    )
    made.append(lambda: box.remove(force=True))
    if aliases:
        client.networks.get(network).disconnect(box)
        client.networks.get(network).connect(box, aliases=aliases)
    box.start()
    box.reload()
    return box


def _gwbridge_addr(client: Any, pid: int) -> str | None:
    """The task's address on docker_gwbridge (reachable from the host), read inside its namespace."""
    import ipaddress

    subnet = client.networks.get("docker_gwbridge").attrs["IPAM"]["Config"][0]["Subnet"]
    out = subprocess.run(
        [*netload.nsenter(pid), "ip", "-4", "-o", "addr", "show"], capture_output=True, text=True, timeout=10
    ).stdout
    for line in out.splitlines():
        fields = line.split()
        if "inet" in fields:
            addr = fields[fields.index("inet") + 1].split("/")[0]
            if ipaddress.ip_address(addr) in ipaddress.ip_network(subnet):
                return addr
    return None


def _userland_proxy() -> bool:
    """Whether Docker forwards published ports with docker-proxy (a process per binding) here."""
    out = subprocess.run(["pgrep", "-x", "docker-proxy"], capture_output=True, text=True, timeout=10)
    return out.returncode == 0


def _ingress_nat() -> str:
    """What the NAT table says of Swarm's ingress (the mesh needs DOCKER-INGRESS rules)."""
    for tool in ("iptables", "iptables-legacy"):
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run([tool, "-t", "nat", "-S"], capture_output=True, text=True, timeout=10).stdout
            if "DOCKER-INGRESS" in out:
                return f"{tool} has DOCKER-INGRESS rules"
    return "no DOCKER-INGRESS NAT rule in iptables or iptables-legacy: the engine set up no ingress sandbox"
