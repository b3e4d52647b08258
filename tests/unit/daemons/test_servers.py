"""The daemons' servers: the descriptor limit the connection caps are fractions of, and the deadline
of a request's head."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
from typing import Any

import pytest

from warren.config import ConnectionLimits
from warren.daemons.servers import HttpServer
from warren.errors import ConfigError


def test_a_daemon_raises_its_soft_descriptor_limit_to_the_hard_one() -> None:
    # The connection caps are fractions of the soft limit: a daemon started with a low soft limit (a
    # service manager's default 1024) raises it to the hard limit first.
    code = (
        "import resource\n"
        "from warren.daemons.servers import raise_nofile_limit\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (256, 1024))\n"
        "raise_nofile_limit()\n"
        "print(*resource.getrlimit(resource.RLIMIT_NOFILE))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["1024", "1024"]


async def _serve(limits: ConnectionLimits) -> tuple[HttpServer, tuple[str, int]]:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})

    sock = socket.create_server(("127.0.0.1", 0))
    sock.setblocking(False)
    server = HttpServer(app, sock, "test", grace_s=1, limits=limits)
    await server.start()
    return server, sock.getsockname()


async def test_a_request_head_trickled_past_its_deadline_closes_the_connection() -> None:
    # A client sending its headers a byte at a time (slowloris) keeps uvicorn's idle timer from ever
    # running: the head's own deadline closes it. A prompt request on the same server is answered.
    limits = ConnectionLimits(request_head_timeout_s=0.5, idle_timeout_s=30)
    server, (host, port) = await _serve(limits)
    try:
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n")
        start = time.monotonic()
        closed = False
        while time.monotonic() - start < 5:
            writer.write(b"X")  # a header that never ends, faster than the idle timer
            try:
                await writer.drain()
                closed = await asyncio.wait_for(reader.read(1), 0.1) == b""
            except TimeoutError:
                continue
            except ConnectionError:
                closed = True
            if closed:
                break
        assert closed, "the server kept a trickling request head open"
        assert 0.4 <= time.monotonic() - start < 2
        writer.close()

        reader, writer = await asyncio.open_connection(host, port)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (await asyncio.wait_for(reader.read(100), 2)).startswith(b"HTTP/1.1 200")
        await asyncio.sleep(0.7)  # past the head deadline: an answered request is not cut
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (await asyncio.wait_for(reader.read(100), 2)).startswith(b"HTTP/1.1 200")
        writer.close()
    finally:
        await server.stop()


def test_the_request_head_timeout_must_be_positive() -> None:
    with pytest.raises(ConfigError, match="request_head_timeout_s"):
        ConnectionLimits(request_head_timeout_s=0).validate()


async def test_a_stopping_server_refuses_new_connections_at_once() -> None:
    # A manager stopping (after handing leadership over) waits up to its grace for requests in
    # progress. A connection opened meanwhile, e.g. a follower forwarding a write to the old leader
    # it still believes in, must be refused at once, not left in the listen backlog unanswered until
    # the grace ends: a client's write would otherwise hang for seconds instead of being retried.
    held = asyncio.Event()
    release = asyncio.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["path"] == "/hold":
            held.set()
            await release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})

    sock = socket.create_server(("127.0.0.1", 0))
    sock.setblocking(False)
    host, port = sock.getsockname()
    server = HttpServer(app, sock, "test", grace_s=5, limits=ConnectionLimits())
    await server.start()
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(b"GET /hold HTTP/1.1\r\nHost: x\r\n\r\n")
    await asyncio.wait_for(held.wait(), 5)
    stopping = asyncio.create_task(server.stop())
    try:
        while not server.server.should_exit:
            await asyncio.sleep(0.01)
        start = time.monotonic()
        with pytest.raises(ConnectionError):
            late_reader, late_writer = await asyncio.wait_for(asyncio.open_connection(host, port), 2)
            late_writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            await late_writer.drain()
            if await asyncio.wait_for(late_reader.read(100), 2) == b"":
                raise ConnectionResetError("closed without an answer")
        assert time.monotonic() - start < 0.5
        assert not stopping.done()  # the request in progress still holds the stop
        release.set()
        assert (await asyncio.wait_for(reader.read(100), 5)).startswith(b"HTTP/1.1 200")
        await asyncio.wait_for(stopping, 5)
    finally:
        release.set()
        writer.close()
        if not stopping.done():
            await stopping
