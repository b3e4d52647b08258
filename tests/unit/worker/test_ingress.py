"""The worker's ingress proxy with real sockets on loopback, on uvloop (what workers run on) and asyncio's
own loop: bytes both ways with flow control, half-close, round-robin, failover past a refusing or silent
backend, table changes, a port it cannot bind, and the connection limit."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import socket
import struct
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from warren.errors import InvalidError
from warren.testing.process import free_ports
from warren.testing.wait import eventually_async
from warren.worker.ingress import Backend, IngressProxy

HOST = "127.0.0.1"


@pytest.fixture(params=[pytest.param(("asyncio", {"use_uvloop": True}), id="uvloop"), "asyncio"])
def anyio_backend(request: pytest.FixtureRequest) -> Any:
    return request.param


def free_port() -> int:
    return free_ports(1, HOST)[0]


class Upstream:
    """A backend: says its name when a client connects, then echoes what it gets; EOF after the client's."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.accepted = 0
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> Upstream:
        self.server = await asyncio.start_server(self._serve, HOST, 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    def backend(self) -> Backend:
        return Backend(HOST, self.port, f"task-{self.name}", "node-1")

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        writer.write(self.name.encode() + b"\n")
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
            writer.close()
        except ConnectionError:
            pass

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()


@contextlib.asynccontextmanager
async def upstreams(*names: str) -> AsyncIterator[list[Upstream]]:
    ups = [await Upstream(name).start() for name in names]
    try:
        yield ups
    finally:
        for up in ups:
            await up.close()


@contextlib.asynccontextmanager
async def proxy(**kw: Any) -> AsyncIterator[IngressProxy]:
    p = IngressProxy(HOST, connect_timeout_s=kw.pop("connect_timeout_s", 1.0),
                     max_connections=kw.pop("max_connections", 64), suspect_s=kw.pop("suspect_s", 0.0))
    try:
        yield p
    finally:
        await p.close()


async def connect(p: IngressProxy, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, str]:
    """A client of the proxy's `port`, and the name of the backend that took it."""
    host, bound = p.bound()[port]
    reader, writer = await asyncio.open_connection(host, bound)
    name = await asyncio.wait_for(reader.readline(), 5.0)
    return reader, writer, name.decode().strip()


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, data: bytes) -> bytes:
    writer.write(data)
    await writer.drain()
    return await asyncio.wait_for(reader.readexactly(len(data)), 5.0)


@contextlib.contextmanager
def closed_port() -> Iterator[int]:
    """A loopback port nothing listens on: a connection to it is refused."""
    yield free_port()


@contextlib.contextmanager
def silent_backend() -> Iterator[int]:
    """A loopback port that never accepts: a listener whose queue (backlog 0) is full, so the kernel
    drops further SYNs and a connect waits until it times out."""
    listener = socket.socket()
    filler = socket.socket()
    try:
        listener.bind((HOST, 0))
        listener.listen(0)
        filler.connect(listener.getsockname())
        yield int(listener.getsockname()[1])
    finally:
        filler.close()
        listener.close()


# -- forwarding ---------------------------------------------------------------------------------------


async def test_bytes_go_both_ways_and_a_large_stream_is_flow_controlled() -> None:
    size = 48 * 1024 * 1024
    blob = hashlib.sha256(b"seed").digest() * (size // 32)
    sent = 0

    async def firehose(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal sent
        assert await reader.readexactly(5) == b"hello"
        for i in range(0, size, 1 << 20):
            writer.write(blob[i:i + (1 << 20)])
            await writer.drain()
            sent = i + (1 << 20)
        writer.close()

    server = await asyncio.start_server(firehose, HOST, 0)
    port = free_port()
    async with proxy() as p:
        await p.update({port: [Backend(HOST, server.sockets[0].getsockname()[1], "t", "n")]})
        reader, writer = await asyncio.open_connection(*p.bound()[port])
        writer.write(b"hello")
        # The client reads nothing: the proxy must stop reading from the backend rather than buffer it.
        [link] = await eventually_async(lambda: list(p._links) or None, 5.0, "the link")
        await eventually_async(
            lambda: link.backend is not None and link.backend.transport is not None
            and not link.backend.transport.is_reading(), 5.0, "the proxy stops reading the backend",
        )
        assert link.client.transport is not None
        assert link.client.transport.get_write_buffer_size() < 4 * 1024 * 1024
        assert sent < size
        got = hashlib.sha256()
        total = 0
        while chunk := await asyncio.wait_for(reader.read(1 << 20), 10.0):
            got.update(chunk)
            total += len(chunk)
        assert total == size and got.digest() == hashlib.sha256(blob).digest()
        writer.close()
        await eventually_async(lambda: p.active == 0, 5.0, "the link is gone")
    server.close()


async def test_half_close_either_way_keeps_the_other_direction() -> None:
    got_from_client = bytearray()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        mode = await reader.readexactly(1)
        if mode == b"c":  # the client closes its side first: answer after its EOF
            got_from_client.extend(await reader.read())  # to EOF
            writer.write(b"got " + bytes(got_from_client))
            writer.close()
        else:  # this side closes first, then still reads what the client sends
            writer.write(b"bye")
            writer.write_eof()
            got_from_client.extend(await reader.read())
            writer.close()

    server = await asyncio.start_server(serve, HOST, 0)
    port = free_port()
    async with proxy() as p:
        await p.update({port: [Backend(HOST, server.sockets[0].getsockname()[1], "t", "n")]})

        reader, writer = await asyncio.open_connection(*p.bound()[port])
        writer.write(b"cdata")
        writer.write_eof()
        assert await asyncio.wait_for(reader.read(), 5.0) == b"got data"

        got_from_client.clear()
        reader, writer = await asyncio.open_connection(*p.bound()[port])
        writer.write(b"s")
        assert await asyncio.wait_for(reader.read(), 5.0) == b"bye"  # to the backend's EOF
        writer.write(b"still here")
        writer.write_eof()
        await eventually_async(lambda: bytes(got_from_client) == b"still here", 5.0, "the late bytes")
        await eventually_async(lambda: p.active == 0, 5.0, "both ends closed")
    server.close()


async def test_connections_go_round_robin_across_the_backends() -> None:
    port = free_port()
    async with upstreams("a", "b", "c") as ups, proxy() as p:
        await p.update({port: [u.backend() for u in ups]})
        names = []
        for _ in range(6):
            reader, writer, name = await connect(p, port)
            assert await echo(reader, writer, b"ping") == b"ping"
            names.append(name)
            writer.close()
        assert names == ["a", "b", "c", "a", "b", "c"]
        assert p.counters.forwarded == 6 and p.counters.per_port == {port: 6}


async def test_a_refusing_backend_is_skipped() -> None:
    port = free_port()
    with closed_port() as dead:
        async with upstreams("b") as [b], proxy() as p:
            await p.update({port: [Backend(HOST, dead, "t-dead", "n"), b.backend()]})
            for _ in range(2):  # starting at the dead one, then at b
                _, writer, name = await connect(p, port)
                assert name == "b"
                writer.close()
            assert p.counters.connect_failures == 1


async def test_a_backend_that_never_accepts_times_out_and_the_next_is_tried() -> None:
    port = free_port()
    with silent_backend() as silent:
        async with upstreams("b") as [b], proxy(connect_timeout_s=0.3) as p:
            await p.update({port: [Backend(HOST, silent, "t-silent", "n"), b.backend()]})
            start = time.monotonic()
            _, writer, name = await connect(p, port)
            assert name == "b" and time.monotonic() - start >= 0.3
            assert p.counters.connect_failures == 1
            writer.close()


async def test_a_backend_that_failed_is_tried_last_for_a_while_then_first_again() -> None:
    port = free_port()
    with silent_backend() as silent:
        async with upstreams("b") as [b], proxy(connect_timeout_s=0.3, suspect_s=60.0) as p:
            lost = Backend(HOST, silent, "t-silent", "n")
            await p.update({port: [lost, b.backend()]})
            _, writer, name = await connect(p, port)  # the round-robin starts at the silent one
            assert name == "b" and p.counters.connect_failures == 1
            writer.close()
            for _ in range(4):  # its turn comes twice more: it is tried after b, so never waited on
                start = time.monotonic()
                _, writer, name = await connect(p, port)
                assert name == "b" and time.monotonic() - start < 0.3
                writer.close()
            assert p.counters.connect_failures == 1
            # A new table without it forgets it; one that lists it again starts afresh.
            await p.update({port: [b.backend()]})
            await p.update({port: [lost, b.backend()]})
            assert not p._suspects


async def test_with_no_backend_answering_the_client_is_closed() -> None:
    port, empty = free_ports(2, HOST)
    with closed_port() as dead1, closed_port() as dead2:
        async with proxy() as p:
            await p.update({port: [Backend(HOST, dead1, "t1", "n"), Backend(HOST, dead2, "t2", "n")],
                            empty: []})
            for published in (port, empty):
                reader, writer = await asyncio.open_connection(*p.bound()[published])
                assert await asyncio.wait_for(reader.read(), 5.0) == b""
                writer.close()
            assert p.counters.connect_failures == 2 and p.counters.unrouted == 2
            await eventually_async(lambda: p.active == 0, 5.0, "no link left")


async def test_a_client_that_resets_while_a_backend_is_tried_is_let_go_at_once() -> None:
    port = free_port()
    with silent_backend() as silent:
        async with proxy(connect_timeout_s=30.0) as p:
            await p.update({port: [Backend(HOST, silent, "t-silent", "n")]})
            client = socket.socket()
            client.connect(p.bound()[port])
            client.sendall(b"a request sent before the backend answers")
            await eventually_async(lambda: p.active == 1, 5.0, "the client is being forwarded")
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            client.close()  # RST (a FIN could be a half-close: the proxy would wait for the backend)
            await eventually_async(lambda: p.active == 0, 2.0, "the link ends without its 30 s wait")
            assert p.counters.connect_failures == 0 and p.counters.forwarded == 0


async def test_what_a_client_sends_before_its_backend_answers_is_passed_on() -> None:
    port = free_port()
    with silent_backend() as silent:
        async with upstreams("b") as [b], proxy(connect_timeout_s=0.3) as p:
            await p.update({port: [Backend(HOST, silent, "t-silent", "n"), b.backend()]})
            reader, writer = await asyncio.open_connection(*p.bound()[port])
            writer.write(b"early")
            writer.write_eof()  # and a half-close, also before the backend is there
            assert await asyncio.wait_for(reader.read(), 5.0) == b"b\nearly"


# -- the table ----------------------------------------------------------------------------------------


async def test_a_new_table_takes_new_connections_while_established_ones_continue() -> None:
    port = free_port()
    async with upstreams("a", "b") as [a, b], proxy() as p:
        await p.update({port: [a.backend()]})
        r1, w1, name = await connect(p, port)
        assert name == "a"
        await p.update({port: [b.backend()]})
        for _ in range(3):
            _, w, name = await connect(p, port)
            assert name == "b"
            w.close()
        assert a.accepted == 1
        assert await echo(r1, w1, b"still through a") == b"still through a"
        w1.close()


async def test_a_port_that_leaves_the_table_is_no_longer_listened_on() -> None:
    port, other = free_ports(2, HOST)
    async with upstreams("a") as [a], proxy() as p:
        await p.update({port: [a.backend()], other: [a.backend()]})
        assert set(p.bound()) == {port, other}
        r1, w1, _ = await connect(p, port)
        await p.update({other: [a.backend()]})
        assert set(p.bound()) == {other}

        async def refused() -> bool:
            try:
                _, w = await asyncio.open_connection(HOST, port)
            except ConnectionRefusedError:
                return True
            w.close()
            return False

        await eventually_async(refused, 5.0, "the port refuses connections")
        assert await echo(r1, w1, b"established") == b"established"  # left to finish
        w1.close()


async def test_a_port_it_cannot_bind_is_logged_once_and_bound_at_a_later_update(
    caplog: pytest.LogCaptureFixture,
) -> None:
    squatter = socket.socket()
    squatter.bind((HOST, 0))
    squatter.listen()
    port = int(squatter.getsockname()[1])
    async with upstreams("a") as [a], proxy() as p:
        with caplog.at_level(logging.WARNING, logger="warren.worker.ingress"):
            await p.update({port: [a.backend()]})
            await p.update({port: [a.backend()]})
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1 and f"{HOST}:{port}" in warnings[0] and "in use" in warnings[0]
        assert p.bound() == {}
        squatter.close()
        await p.update({port: [a.backend()]})
        assert p.bound() == {port: (HOST, port)}
        _, w, name = await connect(p, port)
        assert name == "a"
        w.close()


async def test_a_port_out_of_range_is_refused() -> None:
    async with proxy() as p:
        for bad in (0, 65536, -1):
            with pytest.raises(InvalidError, match="ingress port"):
                await p.update({bad: []})


# -- limits -------------------------------------------------------------------------------------------


async def test_beyond_the_connection_limit_new_clients_are_closed_at_once() -> None:
    port = free_port()
    async with upstreams("a") as [a], proxy(max_connections=2) as p:
        await p.update({port: [a.backend()]})
        held = [await connect(p, port) for _ in range(2)]
        reader, writer = await asyncio.open_connection(*p.bound()[port])
        assert await asyncio.wait_for(reader.read(), 5.0) == b""
        writer.close()
        assert p.counters.rejected == 1 and a.accepted == 2
        _, w0, _ = held[0]
        w0.close()
        await eventually_async(lambda: p.active == 1, 5.0, "a connection ended")
        r, w, name = await connect(p, port)
        assert name == "a" and await echo(r, w, b"x") == b"x"
        assert await echo(held[1][0], held[1][1], b"y") == b"y"
        w.close()
        held[1][1].close()


async def test_close_ends_every_connection_and_listener() -> None:
    port = free_port()
    async with upstreams("a") as [a]:
        p = IngressProxy(HOST, connect_timeout_s=1.0, max_connections=8)
        await p.update({port: [a.backend()]})
        reader, writer, _ = await connect(p, port)
        await p.close()
        assert p.bound() == {}
        assert await asyncio.wait_for(reader.read(), 5.0) == b""
        writer.close()
        await p.update({port: [a.backend()]})  # after close: nothing is bound again
        assert p.bound() == {}
