"""The forwarding client against a real socket server with canned answers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest

from warren.api import forwarder
from warren.api.forwarder import FORWARDED_HEADER, Forwarder
from warren.errors import UnavailableError

Answer = Callable[[bytes], bytes]

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class CannedServer:
    """Reads one request at a time (head + Content-Length body) and writes `answer(request)`."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.requests: list[bytes] = []
        self.connections = 0
        self.server: asyncio.Server | None = None

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                request = head + await reader.readexactly(length)
                self.requests.append(request)
                reply = self.answer(request)
                writer.write(reply)
                await writer.drain()
                if b"connection: close" in reply.lower():
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    @property
    def addr(self) -> str:
        assert self.server is not None
        host, port = self.server.sockets[0].getsockname()[:2]
        return f"{host}:{port}"


async def serve(answer: Answer) -> CannedServer:
    canned = CannedServer(answer)
    canned.server = await asyncio.start_server(canned.handle, "127.0.0.1", 0)
    return canned


def ok(body: bytes = b'{"ok":1}') -> Answer:
    return lambda _req: (
        b"HTTP/1.1 201 Created\r\ncontent-type: application/json\r\ndate: x\r\n"
        + (b"content-length: %d\r\n\r\n" % len(body))
        + body
    )


@pytest.fixture
async def fwd() -> AsyncIterator[Forwarder]:
    f = Forwarder(timeout_s=2.0, tls=None)
    yield f
    f.close()


async def test_forwards_the_request_and_reuses_the_connection(fwd: Forwarder) -> None:
    server = await serve(ok())
    headers = [(b"content-type", b"application/json"), (b"host", b"me"), (b"connection", b"keep-alive")]
    for _ in range(3):
        answer = await fwd.forward(server.addr, "POST", "/v1/services", b"a=1", headers, b'{"name":"x"}')
        assert answer.status == 201 and answer.body == b'{"ok":1}'
        assert (b"content-type", b"application/json") in answer.headers
        assert (FORWARDED_HEADER, server.addr.encode()) in answer.headers
        assert all(k != b"date" for k, _ in answer.headers), "the local server adds its own date"
    assert server.connections == 1
    first = server.requests[0]
    assert first.startswith(b"POST /v1/services?a=1 HTTP/1.1\r\n")
    assert b"host: " + server.addr.encode() in first and b"host: me" not in first
    assert b"connection: keep-alive" not in first  # hop-by-hop
    assert FORWARDED_HEADER + b": " + server.addr.encode() in first
    assert first.endswith(b'content-length: 12\r\n\r\n{"name":"x"}')


async def test_chunked_and_close_delimited_answers(fwd: Forwarder) -> None:
    chunked = await serve(
        lambda _r: (
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n"
        )
    )
    answer = await fwd.forward(chunked.addr, "GET", "/v1/cluster/backup", b"", [], b"")
    assert answer.body == b"abcde"
    closing = await serve(
        lambda _r: b"HTTP/1.1 503 Service Unavailable\r\nconnection: close\r\n\r\nno leader"
    )
    answer = await fwd.forward(closing.addr, "POST", "/v1/services", b"", [], b"{}")
    assert (answer.status, answer.body) == (503, b"no leader")
    await fwd.forward(closing.addr, "POST", "/v1/services", b"", [], b"{}")
    assert closing.connections == 2, "a connection the server closed is not reused"


async def test_a_connection_idle_too_long_is_not_reused(
    fwd: Forwarder, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = await serve(ok())
    await fwd.forward(server.addr, "POST", "/x", b"", [], b"")
    monkeypatch.setattr(forwarder, "IDLE_S", 0.0)
    await fwd.forward(server.addr, "POST", "/x", b"", [], b"")
    assert server.connections == 2


@pytest.mark.parametrize(
    "reply",
    [
        b"garbage\r\n\r\n",
        b"HTTP/1.1 abc OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nno-colon\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\nconnection: close\r\n\r\nshort",
    ],
)
async def test_a_bad_answer_is_unavailable(fwd: Forwarder, reply: bytes) -> None:
    server = await serve(lambda _r: reply)
    with pytest.raises(UnavailableError, match="did not answer"):
        await fwd.forward(server.addr, "POST", "/x", b"", [], b"")


async def test_an_unreachable_leader_is_unavailable(fwd: Forwarder) -> None:
    server = await serve(ok())
    addr = server.addr
    assert server.server is not None
    server.server.close()
    await server.server.wait_closed()
    with pytest.raises(UnavailableError, match="cannot reach the leader"):
        await fwd.forward(addr, "POST", "/x", b"", [], b"")
