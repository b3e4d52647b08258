"""Service discovery for Docker containers (real engine, one manager and one Docker worker on this
host): the worker makes its cluster network (`warren-<node>`) and serves names on its gateway, port 53;
a `web` container resolves `api`, `api.warren` and `tasks.api` through Docker's embedded resolver
(127.0.0.11, which forwards to the container's `dns`, the gateway) and fetches http://api:PORT/ by
name; other names are still forwarded upstream by the worker's server. The network is made once,
reused, and one of the same name that is not the worker's is left alone."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import os
import secrets
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.images import ensure_image
from tests.integration.workers import Fleet, docker_client, fleets, require_docker
from warren.runtime.docker import DockerRuntime
from warren.runtime.network import LABEL_NETWORK_CLUSTER, LABEL_NETWORK_NODE, NetworkError
from warren.testing.wait import eventually

pytestmark = pytest.mark.integration

API_PORT = 18081  # published in ingress mode (the default)
# (busybox-static 1.35's `wget -T` crashes: `timeout` bounds the fetch instead.)
# Resolves and fetches in a loop, one line per attempt: "resolve NAME ADDR..." (no address: failed),
# "fetch ok BODY" or "fetch fail".
WEB = f"""
while true; do
  for name in api api.warren tasks.api; do
    echo "resolve $name $(nslookup $name 2>&1 | sed -n 's/^Address: \\([0-9.]*\\)$/\\1/p' | tr '\\n' ' ')"
  done
  if body=$(timeout 3 wget -q -O - http://api:{API_PORT}/ 2>/dev/null); then echo "fetch ok $body"
  else echo "fetch fail"; fi
  sleep 0.2
done
"""
API = "mkdir -p /w && echo $WARREN_TASK_ID > /w/index.html && exec httpd -f -p 8080 -h /w"


def docker0_ip() -> str:
    """The default bridge's gateway: an address of this host that containers on any bridge reach."""
    config = docker_client().networks.get("bridge").attrs["IPAM"]["Config"][0]
    # The default bridge's IPAM often names no gateway: docker0 has the subnet's first address.
    return str(config.get("Gateway") or next(ipaddress.ip_network(config["Subnet"]).hosts()))


@pytest.fixture(scope="module")
def fleet(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    require_docker()
    if os.geteuid() != 0:
        pytest.skip("the worker's DNS server listens on port 53 of its network's gateway: needs root")
    ensure_image()
    with fleets(tmp_path_factory.mktemp("dockerdns"), request) as make:
        f = make()
        f.start_managers(1)
        # Its published ports must be reachable from its containers: docker0's address is the host's.
        f.add_worker("docker", extra=["--advertise-host", docker0_ip()])
        yield f  # the fleet's teardown removes the worker's network with its containers


def container(fleet: Fleet, service: str) -> Any:
    (task,) = fleet.wait_running(service, 1)
    (found,) = docker_client().containers.list(filters={"label": f"warren.task={task['id']}"})
    return found


def lines(found: Any) -> list[str]:
    return [line for line in found.logs().decode(errors="replace").splitlines() if line]


def test_a_container_resolves_and_reaches_a_service_by_name(fleet: Fleet) -> None:
    (worker,) = fleet.workers
    addr = docker0_ip()
    fleet.create("api", replicas=1, image="warren-busybox:latest", command=["sh", "-c", API],
                 publish=[{"host": API_PORT, "container": 8080}])
    fleet.create("web", replicas=1, image="warren-busybox:latest", command=["sh", "-c", WEB])
    (api_task,) = fleet.wait_running("api", 1)
    web = container(fleet, "web")

    # The worker's network, labelled as its own; web is on it with the gateway as its resolver.
    network = docker_client().networks.get(f"warren-{worker.name}")
    assert network.attrs["Driver"] == "bridge"
    cluster_id = fleet.managers.managers[0].info()["cluster_id"]
    labels = network.attrs["Labels"]
    assert {k: labels.get(k) for k in (LABEL_NETWORK_CLUSTER, LABEL_NETWORK_NODE)} == {
        LABEL_NETWORK_CLUSTER: cluster_id, LABEL_NETWORK_NODE: worker.name,
    }
    gateway = network.attrs["IPAM"]["Config"][0]["Gateway"]
    assert list(web.attrs["NetworkSettings"]["Networks"]) == [f"warren-{worker.name}"]
    assert web.attrs["HostConfig"]["Dns"] == [gateway]

    # By name, in the loop: every name answers the api replica's node, and the fetch reaches it.
    expected = {f"resolve api {addr}", f"resolve api.warren {addr}", f"resolve tasks.api {addr}",
                f"fetch ok {api_task['id']}"}
    eventually(lambda: expected <= {line.strip() for line in lines(web)}, 60,
               "web to resolve api and fetch from it by name",
               detail=lambda: "\n".join(lines(web)[-20:]) + "\n" + worker.log_tail(30))

    # Names are the worker's server's: an unknown one under .warren is its NXDOMAIN, not Docker's.
    code, out = web.exec_run(["nslookup", "nope.warren"])
    assert b"NXDOMAIN" in out, out
    # Other names still go upstream (the host's resolv.conf servers, through the worker's server).
    outside = host_resolvable()
    if outside is not None:
        name, addrs = outside
        code, out = web.exec_run(["nslookup", name])
        assert any(a.encode() in out for a in addrs), (name, addrs, out)
    else:
        print("\nthis host resolves no outside name: the upstream forward was not checked here")


def host_resolvable() -> tuple[str, set[str]] | None:
    """A name outside the cluster this host resolves, with its IPv4 addresses (None: none does)."""
    for name in ("pypi.org", "github.com", "deb.debian.org", "example.org"):
        try:
            infos = socket.getaddrinfo(name, 80, socket.AF_INET, socket.SOCK_STREAM)
        except OSError:
            continue
        return name, {str(info[4][0]) for info in infos}
    return None


def test_the_network_is_reused_and_a_foreign_one_is_left_alone() -> None:
    require_docker()
    engine = docker_client()
    node, cluster = f"dnstest-{secrets.token_hex(3)}", f"c-{secrets.token_hex(3)}"
    name = f"warren-{node}"
    foreign = engine.networks.create(f"{name}-foreign", driver="bridge", labels={"someone": "else"})

    async def run() -> None:
        runtime = DockerRuntime(cluster, node)
        try:
            first = await runtime.ensure_network(name)
            again = await runtime.ensure_network(name)
            assert again == first and first.name == name
            other = DockerRuntime(f"{cluster}-other", node)
            try:
                with pytest.raises(NetworkError, match="exists and is not this worker's"):
                    await other.ensure_network(name)  # the same name, another cluster's worker
            finally:
                await other.close()
            with pytest.raises(NetworkError, match="exists and is not this worker's"):
                await runtime.ensure_network(foreign.name)
        finally:
            await runtime.close()

    try:
        asyncio.run(run())
        made = engine.networks.get(name)
        assert made.attrs["Labels"] == {LABEL_NETWORK_CLUSTER: cluster, LABEL_NETWORK_NODE: node}
        foreign.reload()
        assert foreign.attrs["Labels"] == {"someone": "else"}  # untouched
    finally:
        for net in (name, foreign.name):
            with contextlib.suppress(Exception):
                engine.networks.get(net).remove()


STORE_PORT = 18082  # published in ingress mode (the default): every worker forwards it to a replica
SHOPPER = f"""
while true; do
  if body=$(timeout 3 wget -q -O - http://store:{STORE_PORT}/ 2>/dev/null); then echo "fetch ok $body"
  else echo "fetch fail"; fi
  sleep 0.1
done
"""


def timed_lines(found: Any, since: float = 0.0) -> list[tuple[float, str]]:
    """(time, line) of a container's output at or after `since` (the engine's timestamps)."""
    rows = []
    for raw in found.logs(timestamps=True).decode(errors="replace").splitlines():
        stamp, _, line = raw.partition(" ")
        seconds = datetime.datetime.fromisoformat(stamp[:26] + "+00:00").timestamp()
        if line and seconds >= since:
            rows.append((seconds, line.strip()))
    return rows


def test_containers_reach_every_replica_through_the_ingress_and_keep_reaching_one(fleet: Fleet) -> None:
    """web -> api by name on real Docker: scaled 1 -> 3 on one node (ingress replicas need no host port
    of their own), all three answer; a replica's container killed, requests keep succeeding."""
    (worker,) = fleet.workers
    fleet.create("store", replicas=1, image="warren-busybox:latest", command=["sh", "-c", API],
                 publish=[{"host": STORE_PORT, "container": 8080}],
                 health={"kind": "http", "port": 8080, "interval_s": 0.5, "retries": 1})
    fleet.create("shopper", replicas=1, image="warren-busybox:latest", command=["sh", "-c", SHOPPER])
    shopper = container(fleet, "shopper")
    (one,) = fleet.wait_running("store", 1)
    eventually(lambda: f"fetch ok {one['id']}" in {line for _, line in timed_lines(shopper)}, 60,
               "shopper to reach store by name through the ingress",
               detail=lambda: "\n".join(lines(shopper)[-20:]) + "\n" + worker.log_tail(30))

    fleet.update("store", replicas=3)
    running = {t["id"] for t in fleet.wait_running("store", 3)}
    scaled = time.time()

    def answered(since: float) -> set[str]:
        return {line.split()[2] for _, line in timed_lines(shopper, since) if line.startswith("fetch ok ")}

    eventually(lambda: answered(scaled) >= running, 60, "all three store replicas to answer",
               detail=lambda: "\n".join(lines(shopper)[-20:]))
    assert answered(scaled) <= running | {one["id"]}

    # A replica's container dies: the ingress gives it no new connection once it is gone.
    victim = next(iter(running))
    (found,) = docker_client().containers.list(filters={"label": f"warren.task={victim}"})
    killed = time.time()
    found.kill()
    eventually(lambda: len(timed_lines(shopper, killed + 3.0)) >= 10, 60, "requests after the kill")
    after = timed_lines(shopper, killed)
    failed = [row for row in after if row[1] == "fetch fail"]
    oks = [t for t, line in after if line.startswith("fetch ok ")]
    gap = max((b - a for a, b in zip([killed, *oks], oks, strict=False)), default=0.0)
    print(f"\nafter a store replica's container was killed: {len(after)} requests, {len(failed)} failed, "
          f"longest gap {gap:.2f} s")
    # Only a request under way on the killed replica's connection may fail; no new one may.
    assert len(failed) <= 1 and all(t < killed + 1.0 for t, _ in failed), (
        f"requests failed after a replica's container was killed: {failed}")
