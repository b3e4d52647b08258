"""A Docker worker's containers get its DNS server: the worker makes (or reuses) its cluster network,
listens on the network's gateway and tells the runtime to put containers there; when any of that fails
it warns once and runs containers as before. The engine is a fake here (tests/integration/
test_discovery_docker.py has the real one); the DNS server and its sockets are real, on loopback
addresses standing in for a gateway, at a free port standing in for 53."""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from pathlib import Path

import dns.asyncquery
import dns.message
import pytest

from tests.unit.fake_manager import FakeManager
from tests.unit.worker.agents import M1, make_settings, worker
from tests.unit.worker.fake_runtime import FakeRuntime
from warren.runtime.network import ClusterNetwork, NetworkError, NetworkingRuntime
from warren.testing.wait import eventually_async
from warren.worker import loop as worker_loop

API = {"healthy": ["10.0.0.2"],
       "tasks": [{"task_id": "t1", "slot": 1, "node": "n1", "addr": "10.0.0.2", "healthy": True}]}
GATEWAY = "127.0.0.2"  # any 127/8 address is this host's, like a bridge's gateway


class NetworkedRuntime(FakeRuntime):
    """FakeRuntime with a cluster network (as DockerRuntime has one)."""

    def __init__(self, *, fail: str | None = None, gateway: str = GATEWAY) -> None:
        super().__init__("docker")
        self.fail = fail
        self.gateway = gateway
        self.asked: list[str] = []
        self.used: list[ClusterNetwork | None] = []

    async def ensure_network(self, name: str) -> ClusterNetwork:
        self.asked.append(name)
        if self.fail is not None:
            raise NetworkError(self.fail)
        return ClusterNetwork(name, "id-1", self.gateway, "127.0.0.0/8")

    def use_network(self, network: ClusterNetwork | None) -> None:
        self.used.append(network)


@pytest.fixture
def dns_port(monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    """A port free for UDP and TCP on GATEWAY, used instead of 53."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((GATEWAY, 0))
        port = int(s.getsockname()[1])
    monkeypatch.setattr(worker_loop, "CONTAINER_DNS_PORT", port)
    yield port


async def ask(host: str, port: int, name: str) -> list[str]:
    answer = await dns.asyncquery.udp(dns.message.make_query(name, "A"), host, port=port, timeout=2.0)
    return sorted(rr.to_text() for rrset in answer.answer for rr in rrset)


def test_the_fake_is_a_networking_runtime_and_the_plain_one_is_not() -> None:
    assert isinstance(NetworkedRuntime(), NetworkingRuntime)
    assert not isinstance(FakeRuntime(), NetworkingRuntime)


async def test_containers_join_the_network_and_names_answer_on_its_gateway(
    tmp_path: Path, dns_port: int
) -> None:
    m = FakeManager()
    m.set_endpoints({"api": API})
    rt = NetworkedRuntime()
    async with worker(make_settings(tmp_path / "w"), rt, {M1: m}) as w:
        await eventually_async(lambda: rt.used, 5.0, "the runtime told of its network")
        loop = w.agent.worker_loop
        assert loop is not None and loop.dns is not None
        assert rt.asked == [f"warren-{loop.node}"]
        assert rt.used == [ClusterNetwork(f"warren-{loop.node}", "id-1", GATEWAY, "127.0.0.0/8")]
        # A Docker-only worker listens on the gateway alone (no process task could use dns_addr).
        assert loop.dns.addresses == [(GATEWAY, dns_port)]
        assert loop.dns_for_processes is None
        await eventually_async(lambda: loop.endpoints.current is not None, 5.0, "the endpoints heard")
        assert await ask(GATEWAY, dns_port, "api") == ["10.0.0.2"]
        assert await ask(GATEWAY, dns_port, "tasks.api.warren") == ["10.0.0.2"]


async def test_with_both_runtimes_one_server_answers_on_both_addresses(tmp_path: Path, dns_port: int) -> None:
    m = FakeManager()
    m.set_endpoints({"api": API})
    docker_rt, process_rt = NetworkedRuntime(), FakeRuntime("process")
    settings = make_settings(tmp_path / "w", runtime="docker,process")
    async with worker(settings, [docker_rt, process_rt], {M1: m}) as w:
        await eventually_async(lambda: docker_rt.used, 5.0, "the runtime told of its network")
        loop = w.agent.worker_loop
        assert loop is not None and loop.dns is not None and loop.dns_for_processes is not None
        local = loop.dns_for_processes
        assert local[0] == "127.0.0.1" and loop.dns.addresses == [local, (GATEWAY, dns_port)]
        assert loop.discovery_env["WARREN_DNS"] == f"127.0.0.1:{local[1]}"  # processes: dns_addr's
        await eventually_async(lambda: loop.endpoints.current is not None, 5.0, "the endpoints heard")
        assert await ask(*local, "api") == await ask(GATEWAY, dns_port, "api") == ["10.0.0.2"]


async def test_a_network_that_cannot_be_made_is_one_warning_and_containers_run_as_before(
    tmp_path: Path, dns_port: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="warren.worker.loop")
    m = FakeManager()
    rt = NetworkedRuntime(fail="a Docker network named warren-x exists and is not this worker's")
    async with worker(make_settings(tmp_path / "w"), rt, {M1: m}) as w:
        await eventually_async(lambda: len(m.sessions) >= 1, 5.0, "the session")
        loop = w.agent.worker_loop
        assert loop is not None and loop.dns is None  # nothing to serve: no server at all
        assert rt.asked and rt.used == []
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        "Docker containers get no service names (they run on Docker's default bridge): a Docker network "
        "named warren-x exists and is not this worker's (worker start --docker-network off stops trying)"
    ]


async def test_a_gateway_port_that_is_taken_is_one_warning_and_containers_run_as_before(
    tmp_path: Path, dns_port: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="warren.worker.loop")
    m = FakeManager()
    rt = NetworkedRuntime()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind((GATEWAY, dns_port))
        async with worker(make_settings(tmp_path / "w"), rt, {M1: m}) as w:
            await eventually_async(lambda: len(m.sessions) >= 1, 5.0, "the session")
            loop = w.agent.worker_loop
            assert loop is not None and loop.dns is None
            assert rt.asked and rt.used == []
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert f"the DNS server cannot listen on {GATEWAY}:{dns_port}, the gateway of Docker network" in warning
    assert "another DNS server listens there" in warning


async def test_docker_network_off_makes_no_network_and_no_server(tmp_path: Path, dns_port: int) -> None:
    m = FakeManager()
    rt = NetworkedRuntime()
    async with worker(make_settings(tmp_path / "w", docker_network=None), rt, {M1: m}) as w:
        await eventually_async(lambda: len(m.sessions) >= 1, 5.0, "the session")
        loop = w.agent.worker_loop
        assert loop is not None and loop.dns is None
        assert rt.asked == [] and rt.used == []
