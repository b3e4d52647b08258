"""The forwarding client against a real socket server with canned answers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import h11
import pytest

from warren.api import forwarder
from warren.api.forwarder import FORWARDED_HEADER, Forwarder
from warren.errors import InvalidError, UnavailableError

Answer = Callable[[bytes], bytes]


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
        answer = await fwd.forward(server.addr, "POST", b"/v1/services?a=1", headers, b'{"name":"x"}')
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
    answer = await fwd.forward(chunked.addr, "GET", b"/v1/cluster/backup", [], b"")
    assert answer.body == b"abcde"
    closing = await serve(
        lambda _r: b"HTTP/1.1 503 Service Unavailable\r\nconnection: close\r\n\r\nno leader"
    )
    answer = await fwd.forward(closing.addr, "POST", b"/v1/services", [], b"{}")
    assert (answer.status, answer.body) == (503, b"no leader")
    await fwd.forward(closing.addr, "POST", b"/v1/services", [], b"{}")
    assert closing.connections == 2, "a connection the server closed is not reused"


async def test_a_connection_idle_too_long_is_not_reused(
    fwd: Forwarder, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = await serve(ok())
    await fwd.forward(server.addr, "POST", b"/x", [], b"")
    monkeypatch.setattr(forwarder, "IDLE_S", 0.0)
    await fwd.forward(server.addr, "POST", b"/x", [], b"")
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
        await fwd.forward(server.addr, "POST", b"/x", [], b"")


async def test_an_unreachable_leader_is_unavailable(fwd: Forwarder) -> None:
    server = await serve(ok())
    addr = server.addr
    assert server.server is not None
    server.server.close()
    await server.server.wait_closed()
    with pytest.raises(UnavailableError, match="cannot reach the leader"):
        await fwd.forward(addr, "POST", b"/x", [], b"")


# -- one request in, one request out (issue 13 §1) --------------------------------------------------


@pytest.mark.parametrize(
    "raw_path, query",
    [
        (b"/v1/dispatcher/x HTTP/1.1\r\nx-a: b\r\n\r\nPOST /v1/services", b""),  # CR LF, space
        (b"/v1/dispatcher/x\nPOST", b""),  # a bare LF
        (b"/v1/dispatcher/x\rPOST", b""),  # a bare CR
        (b"/v1/dispatcher/\x00", b""),
        (b"/v1/dispatcher/\x7f", b""),  # DEL
        (b"/v1/dispatcher/\x1b[31m", b""),  # another CTL
        (b"/v1/dispatcher/\tx", b""),
        (b"/v1/dispatcher/\xc3\xa9", b""),  # non-ASCII
        (b"/v1/dispatcher/x", b"a=1 HTTP/1.1\r\n\r\nGET /"),  # the query too
        (b"/v1/dispatcher/x", b"a=\xff"),
        (b"/v1/x#frag", b""),
        (b"v1/x", b""),  # not origin-form
        (b"*", b""),
        (b"", b""),
    ],
)
def test_a_target_that_is_not_rfc_9112_origin_form_is_refused(raw_path: bytes, query: bytes) -> None:
    with pytest.raises(InvalidError, match="invalid request target"):
        forwarder.request_target(raw_path, query)


def test_a_valid_target_is_forwarded_as_sent_still_encoded() -> None:
    assert forwarder.request_target(b"/v1/dispatcher/x%0d%0aPOST%20/v1/services", b"a=%0D%0A&b=[1]") == (
        b"/v1/dispatcher/x%0d%0aPOST%20/v1/services?a=%0D%0A&b=[1]"
    )
    assert forwarder.request_target(b"/v1/services", b"") == b"/v1/services"


@pytest.mark.parametrize(
    "header",
    [
        (b"x-a", b"b\r\nx-warren-identity: admin admin"),
        (b"x-a", b"b\nPOST /v1/services HTTP/1.1"),
        (b"x-a", b"b\rc"),
        (b"x-a", b"b\x00c"),
        (b"x-a", b"b\x7f"),
        (b"x-a\r\nx-b", b"c"),
        (b"x a", b"c"),
        (b"x-a:", b"c"),
        (b"", b"c"),
        (b"x-\xc3\xa9", b"c"),
    ],
)
async def test_a_header_with_cr_lf_nul_or_not_a_token_is_refused_before_sending(
    fwd: Forwarder, header: tuple[bytes, bytes]
) -> None:
    server = await serve(ok())
    with pytest.raises(InvalidError, match="invalid header"):
        forwarder.check_headers([header])
    with pytest.raises(InvalidError):
        await fwd.forward(server.addr, "POST", b"/v1/x", [header], b"")
    assert server.connections == 0 and server.requests == [], "nothing reached the leader"


async def test_a_bad_target_reaches_nothing(fwd: Forwarder) -> None:
    server = await serve(ok())
    with pytest.raises(InvalidError):
        await fwd.forward(server.addr, "POST", b"/v1/x HTTP/1.1\r\n\r\nPOST /v1/services", [], b"")
    assert server.connections == 0 and server.requests == []


async def test_the_request_is_one_http_message_written_by_h11(fwd: Forwarder) -> None:
    """The leader's parser finds exactly one request, with the target and headers as sent."""
    server = await serve(ok())
    target = b"/v1/dispatcher/x%0d%0aPOST%20/v1/services%20HTTP/1.1?q=%0a"
    headers = [(b"x-warren-identity", b"worker w1"), (b"x-note", b"  a\tb  "), (b"content-length", b"99")]
    await fwd.forward(server.addr, "POST", target, headers, b"body")
    [raw] = server.requests
    leader = h11.Connection(h11.SERVER)
    leader.receive_data(raw)
    request = leader.next_event()
    assert isinstance(request, h11.Request)
    assert (request.method, request.target) == (b"POST", target)
    fields = list(request.headers)
    assert (b"x-warren-identity", b"worker w1") in fields
    assert (b"x-note", b"a\tb") in fields
    assert [v for k, v in fields if k == b"content-length"] == [b"4"], "the length is ours"
    assert (FORWARDED_HEADER, server.addr.encode()) in fields
    data = leader.next_event()
    assert isinstance(data, h11.Data) and data.data == b"body"
    assert isinstance(leader.next_event(), h11.EndOfMessage)
    assert leader.next_event() is h11.NEED_DATA, "nothing after the one request"


async def test_each_request_on_the_pooled_connection_gets_its_own_answer(fwd: Forwarder) -> None:
    count = 0

    def numbered(_req: bytes) -> bytes:
        nonlocal count
        count += 1
        body = b"answer %d" % count
        return b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body)

    server = await serve(numbered)
    for n in range(1, 6):
        answer = await fwd.forward(server.addr, "POST", b"/v1/x?n=%d" % n, [], b"")
        assert answer.body == b"answer %d" % n
    assert server.connections == 1


async def test_bytes_after_the_answer_are_never_the_next_answer(fwd: Forwarder) -> None:
    """A leader (or anything in between) writing a second answer after the first: the connection is
    dropped, and the next request gets its own answer on a new one."""
    count = 0

    def doubled(_req: bytes) -> bytes:
        nonlocal count
        count += 1
        first = b"HTTP/1.1 200 OK\r\ncontent-length: 7\r\n\r\nfirst %d" % count
        return first + b"HTTP/1.1 201 Created\r\ncontent-length: 5\r\n\r\nstale"

    server = await serve(doubled)
    first = await fwd.forward(server.addr, "POST", b"/v1/x", [], b"")
    assert (first.status, first.body) == (200, b"first 1")
    second = await fwd.forward(server.addr, "POST", b"/v1/x", [], b"")
    assert (second.status, second.body) == (200, b"first 2")
    assert server.connections == 2


async def test_an_answer_body_over_the_bound_is_refused() -> None:
    big = Forwarder(timeout_s=2.0, tls=None, max_body=100)
    try:
        server = await serve(ok(b"x" * 101))
        with pytest.raises(UnavailableError, match="larger than 100 bytes"):
            await big.forward(server.addr, "GET", b"/v1/cluster/backup", [], b"")
        chunked = await serve(
            lambda _r: (
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
                + b"40\r\n"
                + b"y" * 64
                + b"\r\n"
                + b"40\r\n"
                + b"y" * 64
                + b"\r\n0\r\n\r\n"
            )
        )
        with pytest.raises(UnavailableError, match="larger than 100 bytes"):
            await big.forward(chunked.addr, "GET", b"/v1/cluster/backup", [], b"")
        assert (
            await big.forward((await serve(ok(b"x" * 100))).addr, "GET", b"/", [], b"")
        ).body == b"x" * 100
    finally:
        big.close()


async def test_an_answer_head_over_the_bound_is_refused(fwd: Forwarder) -> None:
    huge = (
        b"HTTP/1.1 200 OK\r\nx-big: "
        + b"a" * (forwarder.MAX_HEAD + forwarder.READ_CHUNK)
        + b"\r\ncontent-length: 0\r\n\r\n"
    )
    server = await serve(lambda _r: huge)
    with pytest.raises(UnavailableError, match="did not answer"):
        await fwd.forward(server.addr, "GET", b"/", [], b"")
