"""The worker's DNS server through real packets on loopback (dnspython's query functions as the client):
service names from the endpoints, round-robin, NXDOMAIN, forwarding, and bad packets."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Sequence
from typing import Any

import dns.asyncquery
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import pytest

from warren.worker.dns import DnsServer, resolv_conf_nameservers
from warren.worker.endpoints import Endpoints, parse

API = {
    "healthy": ["10.0.0.2", "10.0.0.3", "10.0.0.4"],
    "tasks": [
        {"task_id": f"t{i}", "slot": i, "node": f"n{i}", "addr": f"10.0.0.{i}", "healthy": i > 1}
        for i in range(1, 5)
    ],
}


def table(**services: Any) -> Endpoints:
    return parse({"digest": "d1", "services": services})


async def started(endpoints: Endpoints | None, upstreams: Sequence[tuple[str, int]] = (),
                  **extra: Any) -> DnsServer:
    fields: dict[str, Any] = dict(host="127.0.0.1", port=0, ttl_s=1, forward_timeout_s=0.5, max_forwards=8)
    fields.update(extra)
    server = DnsServer(lambda: endpoints, upstreams=upstreams, **fields)
    await server.start()
    return server


@pytest.fixture
async def api_server() -> AsyncIterator[DnsServer]:
    server = await started(table(api=API, web={"healthy": [], "tasks": []}))
    yield server
    await server.stop()


async def ask(server: DnsServer, name: str, rdtype: str = "A", *, tcp: bool = False) -> dns.message.Message:
    query = dns.message.make_query(name, rdtype)
    host, port = server.address
    if tcp:
        return await dns.asyncquery.tcp(query, host, port=port, timeout=2.0)
    return await dns.asyncquery.udp(query, host, port=port, timeout=2.0)


def addrs(answer: dns.message.Message) -> list[str]:
    return [rr.to_text() for rrset in answer.answer for rr in rrset]


async def test_a_service_name_and_its_zone_form_answer_the_healthy_replicas_case_insensitively(
    api_server: DnsServer,
) -> None:
    for name in ("api", "api.warren", "API.Warren.", "Api"):
        answer = await ask(api_server, name)
        assert answer.rcode() == dns.rcode.NOERROR
        assert answer.flags & dns.flags.AA
        assert sorted(addrs(answer)) == ["10.0.0.2", "10.0.0.3", "10.0.0.4"], name
        assert answer.answer[0].ttl == 1


async def test_tasks_name_lists_every_replica_healthy_or_not(api_server: DnsServer) -> None:
    for name in ("tasks.api", "tasks.api.warren"):
        assert sorted(addrs(await ask(api_server, name))) == ["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"]


async def test_answers_rotate_for_round_robin(api_server: DnsServer) -> None:
    firsts = [addrs(await ask(api_server, "api"))[0] for _ in range(6)]
    assert firsts == ["10.0.0.2", "10.0.0.3", "10.0.0.4"] * 2


async def test_aaaa_is_empty_noerror_and_unknown_zone_names_are_nxdomain(api_server: DnsServer) -> None:
    answer = await ask(api_server, "api", "AAAA")
    assert (answer.rcode(), answer.answer) == (dns.rcode.NOERROR, [])
    answer = await ask(api_server, "web")  # a service with no healthy replica: the name exists
    assert (answer.rcode(), answer.answer) == (dns.rcode.NOERROR, [])
    for name in ("nosuch.warren", "tasks.nosuch.warren", "a.b.api.warren"):
        assert (await ask(api_server, name)).rcode() == dns.rcode.NXDOMAIN, name


async def test_tcp_answers_too(api_server: DnsServer) -> None:
    assert sorted(addrs(await ask(api_server, "api", tcp=True))) == ["10.0.0.2", "10.0.0.3", "10.0.0.4"]


async def test_a_udp_answer_over_512_bytes_is_truncated_and_tcp_gives_it_whole() -> None:
    many = [f"10.1.{i // 250}.{i % 250 + 1}" for i in range(100)]
    server = await started(table(big={"healthy": many, "tasks": []}))
    try:
        answer = await ask(server, "big")
        assert answer.flags & dns.flags.TC
        assert answer.answer == []
        assert len(addrs(await ask(server, "big", tcp=True))) == 100
        # A client that says (EDNS) it takes 4096 bytes gets it whole over UDP.
        query = dns.message.make_query("big", "A", use_edns=0, payload=4096)
        answer = await dns.asyncquery.udp(query, *server.address[:1], port=server.address[1], timeout=2.0)
        assert not answer.flags & dns.flags.TC
        assert len(addrs(answer)) == 100
    finally:
        await server.stop()


async def test_a_malformed_packet_is_ignored_and_the_server_keeps_answering(api_server: DnsServer) -> None:
    host, port = api_server.address
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.3)
        for junk in (b"\x00", b"\xff" * 40, bytes(range(12)) + b"\x03abc"):
            sock.sendto(junk, (host, port))
            with pytest.raises(TimeoutError):
                await asyncio.to_thread(sock.recv, 4096)
    assert addrs(await ask(api_server, "api"))


class FakeUpstream(asyncio.DatagramProtocol):
    """A nameserver answering every A query with 192.0.2.7."""

    def __init__(self) -> None:
        self.transport: Any = None
        self.asked: list[str] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        query = dns.message.from_wire(data)
        self.asked.append(query.question[0].name.to_text())
        response = dns.message.make_response(query)
        response.answer.append(dns.rrset.from_text(query.question[0].name, 60, "IN", "A", "192.0.2.7"))
        self.transport.sendto(response.to_wire(), addr)


async def test_other_names_are_forwarded_upstream_and_servfail_when_none_answers() -> None:
    loop = asyncio.get_running_loop()
    transport, upstream = await loop.create_datagram_endpoint(FakeUpstream, local_addr=("127.0.0.1", 0))
    up_port = transport.get_extra_info("sockname")[1]
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # bound, never answers
    silent.bind(("127.0.0.1", 0))
    try:
        server = await started(table(api=API), upstreams=[silent.getsockname(), ("127.0.0.1", up_port)],
                               forward_timeout_s=1.0)
        try:
            # An unknown bare name is not the cluster's: forwarded (the silent one first, then the next)
            for name in ("example.org", "nosuch"):
                answer = await ask(server, name)
                assert (answer.rcode(), addrs(answer)) == (dns.rcode.NOERROR, ["192.0.2.7"]), name
            assert upstream.asked == ["example.org.", "nosuch."]
            assert addrs(await ask(server, "api"))  # the cluster's names are not forwarded
            assert upstream.asked == ["example.org.", "nosuch."]
        finally:
            await server.stop()
        lonely = await started(table(api=API), upstreams=[silent.getsockname()], forward_timeout_s=0.3)
        try:
            assert (await ask(lonely, "example.org")).rcode() == dns.rcode.SERVFAIL
        finally:
            await lonely.stop()
        nobody = await started(table(api=API), upstreams=[])
        try:
            assert (await ask(nobody, "example.org")).rcode() == dns.rcode.SERVFAIL
        finally:
            await nobody.stop()
    finally:
        transport.close()
        silent.close()


async def test_before_any_endpoints_zone_names_are_servfail_not_nxdomain() -> None:
    server = await started(None)
    try:
        assert (await ask(server, "api.warren")).rcode() == dns.rcode.SERVFAIL
    finally:
        await server.stop()


def test_resolv_conf_nameservers_skip_what_is_not_an_address(tmp_path: Any) -> None:
    conf = tmp_path / "resolv.conf"
    conf.write_text("# c\nnameserver 10.0.0.53\nnameserver bogus\nsearch lan\nnameserver fe80::1%eth0\n")
    assert resolv_conf_nameservers(str(conf)) == ["10.0.0.53", "fe80::1"]
    assert resolv_conf_nameservers(str(tmp_path / "none")) == []
