"""Forwarding a follower's write to the leader: an HTTP/1.1 client (h11) over pooled keep-alive sockets.

A general client (httpx) cost about 1.5 ms per forwarded request on a 2-core box, more than the Raft
commit itself; this one sends the already-read request and reads one answer, nothing else. Connections
idle for longer than IDLE_S are not reused, so a pooled socket is never one the leader's server
(keep-alive 5 s) is about to close.

The connection to the leader is authenticated as this manager, so it must carry exactly the one request
the client sent, with the client's identity stated (docs/security.md): the request target is the one
the client sent (raw, still percent-encoded) and must be an RFC 9112 origin-form target, header fields
must be RFC 9110 fields, and h11 writes and reads the messages. Nothing here joins strings into HTTP.
A connection whose answer was followed by extra bytes is dropped, never reused, so no answer can be
taken for the next request's.
"""

from __future__ import annotations

import asyncio
import re
import ssl
import time
from collections import defaultdict
from dataclasses import dataclass

import h11

from warren.errors import InvalidError, UnavailableError
from warren.formats import MIB, split_host_port
from warren.pki.names import MANAGER_NAME

# Hop-by-hop and connection headers are not forwarded (RFC 9110 §7.6.1); Host and length are ours.
DROP_REQUEST_HEADERS = frozenset(
    {b"host", b"connection", b"keep-alive", b"transfer-encoding", b"te", b"upgrade", b"content-length"}
)
# The local server adds its own date, server and length.
DROP_RESPONSE_HEADERS = DROP_REQUEST_HEADERS | {b"date", b"server"}
# Set by the forwarding follower on the request (the leader then requires a stated identity, see
# warren.api.auth) and on the answer it returns (the client sees who answered).
FORWARDED_HEADER = b"x-warren-forwarded-to"
# Reuse a pooled connection only if it has been idle for less than this; seconds.
IDLE_S = 3.0
# Pooled idle connections kept per leader address.
POOL_SIZE = 16
# Largest response head (status line and headers) accepted from the leader; bytes. h11 refuses a head
# still incomplete past this (the connection is dropped), so at most MAX_HEAD + READ_CHUNK bytes of
# head are ever buffered.
MAX_HEAD = 64 * 1024
# Largest response body accepted from the leader, held in memory until it is passed on; bytes. The
# largest forwarded answers are backups (the whole state database) and non-followed task logs; a
# larger answer is refused with 503 (take such a backup from the leader itself). The forwarded
# request body is bounded before this, by the API's max_request_bytes (warren.api.routing).
MAX_BODY = 256 * MIB
# Bytes read from the socket at a time.
READ_CHUNK = 64 * 1024

# RFC 9112 §3.2.1 origin-form: "/" and then visible ASCII only (%x21-7E: no space, CTL, CR, LF, NUL,
# DEL or non-ASCII byte), and no "#" (a fragment is never part of a request target).
_TARGET = re.compile(rb"/[\x21\x22\x24-\x7e]*")
# RFC 9110 §5.1: a field name is a token.
_FIELD_NAME = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# RFC 9110 §5.5: a field value is visible ASCII, obs-text, spaces and tabs (no CR, LF, NUL or other
# control character, no DEL).
_FIELD_VALUE = re.compile(rb"[\t\x20-\x7e\x80-\xff]*")


def request_target(raw_path: bytes, query: bytes) -> bytes:
    """The request target to forward, as the client sent it; InvalidError (400) unless it is a valid
    origin-form target."""
    target = raw_path + (b"?" + query if query else b"")
    if not _TARGET.fullmatch(target):
        raise InvalidError(
            f"invalid request target {target[:80]!r}: it must start with / and hold only visible ASCII "
            "(percent-encode anything else)"
        )
    return target


def check_headers(headers: list[tuple[bytes, bytes]]) -> None:
    """InvalidError (400) naming the field unless every header is a valid HTTP field."""
    for name, value in headers:
        if not _FIELD_NAME.fullmatch(name):
            raise InvalidError(f"invalid header name {name[:40]!r}")
        if not _FIELD_VALUE.fullmatch(value):
            raise InvalidError(
                f"invalid header {name.decode('ascii')}: its value holds CR, LF, NUL or another control "
                "character"
            )


@dataclass(frozen=True, slots=True)
class Forwarded:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes


@dataclass(slots=True)
class _Conn:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    http: h11.Connection
    idle_since: float

    def usable(self) -> bool:
        return (
            not self.writer.is_closing()
            and not self.reader.at_eof()
            and self.http.our_state is h11.IDLE
            and time.monotonic() - self.idle_since < IDLE_S
        )

    def close(self) -> None:
        self.writer.close()


class Forwarder:
    def __init__(self, timeout_s: float, tls: ssl.SSLContext | None, max_body: int = MAX_BODY) -> None:
        self.timeout_s = timeout_s
        # Mutual TLS with this manager's certificate (verifying the leader as a manager); None only in
        # unit tests against a plain server.
        self.tls = tls
        self.max_body = max_body
        self._pool: dict[str, list[_Conn]] = defaultdict(list)

    async def forward(
        self,
        addr: str,
        method: str,
        target: bytes,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
    ) -> Forwarded:
        """The leader's answer to the request, as it is. InvalidError if the target or a header is not
        valid HTTP (nothing is sent); UnavailableError if the answer could not be had (the request may
        or may not have been applied if the leader failed after receiving it)."""
        request_target(target, b"")  # the target with its query, checked again (callers check first)
        check_headers(headers)
        fields = [(b"host", addr.encode())]
        fields.extend((k, v.strip(b" \t")) for k, v in headers if k.lower() not in DROP_REQUEST_HEADERS)
        fields.append((FORWARDED_HEADER, addr.encode()))
        fields.append((b"content-length", str(len(body)).encode()))
        try:
            request = h11.Request(method=method.encode("ascii"), target=target, headers=fields)
        except (h11.LocalProtocolError, UnicodeEncodeError) as exc:
            raise InvalidError(f"the request cannot be forwarded: {exc}") from None
        conn = await self._connection(addr)
        try:
            async with asyncio.timeout(self.timeout_s):
                data = conn.http.send(request) or b""
                if body:
                    data += conn.http.send(h11.Data(data=body)) or b""
                data += conn.http.send(h11.EndOfMessage()) or b""
                conn.writer.write(data)
                await conn.writer.drain()
                status, resp_headers, resp_body = await self._read_answer(conn)
        except TimeoutError:  # before OSError, of which it is a subclass
            conn.close()
            raise UnavailableError(
                f"the leader at {addr} did not answer within {self.timeout_s:g} s"
            ) from None
        except (OSError, EOFError, h11.ProtocolError, ValueError) as exc:
            conn.close()
            raise UnavailableError(
                f"the leader at {addr} did not answer: {exc or type(exc).__name__}"
            ) from None
        self._release(addr, conn)
        resp_headers.append((FORWARDED_HEADER, addr.encode()))
        return Forwarded(status, resp_headers, resp_body)

    async def _read_answer(self, conn: _Conn) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        """(status, headers without hop-by-hop ones, body) of the one answer to the request sent."""
        status = 0
        headers: list[tuple[bytes, bytes]] = []
        chunks: list[bytes] = []
        size = 0
        while True:
            event = conn.http.next_event()
            if event is h11.NEED_DATA:
                data = await conn.reader.read(READ_CHUNK)
                conn.http.receive_data(data)  # b"" is the end of the stream
            elif isinstance(event, h11.InformationalResponse):
                continue
            elif isinstance(event, h11.Response):
                status = event.status_code
                headers = [(k, v) for k, v in event.headers if k not in DROP_RESPONSE_HEADERS]
            elif isinstance(event, h11.Data):
                size += len(event.data)
                if size > self.max_body:
                    raise ValueError(f"its answer is larger than {self.max_body} bytes")
                chunks.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                return status, headers, b"".join(chunks)
            else:  # ConnectionClosed before the end of the answer, or PAUSED (cannot happen)
                raise EOFError("the connection ended before the answer did")

    def _release(self, addr: str, conn: _Conn) -> None:
        """Pool the connection if it can carry the next request, else close it."""
        extra, _ = conn.http.trailing_data
        if (
            conn.http.our_state is h11.DONE
            and conn.http.their_state is h11.DONE
            and not extra  # bytes after the answer: never taken for the next request's answer
            and len(self._pool[addr]) < POOL_SIZE
        ):
            conn.http.start_next_cycle()
            conn.idle_since = time.monotonic()
            self._pool[addr].append(conn)
        else:
            conn.close()

    async def _connection(self, addr: str) -> _Conn:
        idle = self._pool[addr]
        while idle:
            conn = idle.pop()
            if conn.usable():
                return conn
            conn.close()
        host, port = split_host_port(addr, field="leader address")
        try:
            async with asyncio.timeout(self.timeout_s):
                name = MANAGER_NAME if self.tls else None
                reader, writer = await asyncio.open_connection(
                    host, port, limit=MAX_HEAD, ssl=self.tls, server_hostname=name
                )
        except (OSError, TimeoutError) as exc:
            raise UnavailableError(
                f"cannot reach the leader at {addr}: {exc or type(exc).__name__}"
            ) from None
        http = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_HEAD)
        return _Conn(reader, writer, http, time.monotonic())

    def close(self) -> None:
        for conns in self._pool.values():
            for conn in conns:
                conn.close()
        self._pool.clear()
