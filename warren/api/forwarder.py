"""Forwarding a follower's write to the leader: a small HTTP/1.1 client over pooled keep-alive sockets.

A general client (httpx) cost about 1.5 ms per forwarded request on a 2-core box, more than the Raft
commit itself; this one writes the already-read request in one go and reads one answer (Content-Length
or chunked), nothing else. Connections idle for longer than IDLE_S are not reused, so a pooled socket
is never one the leader's server (keep-alive 5 s) is about to close.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections import defaultdict
from dataclasses import dataclass

from warren.config import split_host_port
from warren.errors import UnavailableError
from warren.pki.certs import MANAGER_NAME

# Hop-by-hop and connection headers are not forwarded (RFC 9110 §7.6.1); Host and length are ours.
DROP_REQUEST_HEADERS = frozenset(
    {b"host", b"connection", b"keep-alive", b"transfer-encoding", b"te", b"upgrade", b"content-length"}
)
# The local server adds its own date, server and length.
DROP_RESPONSE_HEADERS = DROP_REQUEST_HEADERS | {b"date", b"server"}
FORWARDED_HEADER = b"x-warren-forwarded-to"
# Reuse a pooled connection only if it has been idle for less than this; seconds.
IDLE_S = 3.0
# Pooled idle connections kept per leader address.
POOL_SIZE = 16
# Largest response head (status line and headers) accepted; bytes.
MAX_HEAD = 64 * 1024


@dataclass(frozen=True, slots=True)
class Forwarded:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes


@dataclass(slots=True)
class _Conn:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    idle_since: float

    def usable(self) -> bool:
        return (
            not self.writer.is_closing()
            and not self.reader.at_eof()
            and time.monotonic() - self.idle_since < IDLE_S
        )

    def close(self) -> None:
        self.writer.close()


class Forwarder:
    def __init__(self, timeout_s: float, tls: ssl.SSLContext | None) -> None:
        self.timeout_s = timeout_s
        # Mutual TLS with this manager's certificate (verifying the leader as a manager); None only in
        # unit tests against a plain server.
        self.tls = tls
        self._pool: dict[str, list[_Conn]] = defaultdict(list)

    async def forward(
        self,
        addr: str,
        method: str,
        path: str,
        query: bytes,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
    ) -> Forwarded:
        """The leader's answer to the request, as it is. UnavailableError if it could not be had (the
        request may or may not have been applied if the leader failed after receiving it)."""
        head = [f"{method} {path}{'?' if query else ''}".encode() + query + b" HTTP/1.1"]
        head.append(b"host: " + addr.encode())
        head.extend(k + b": " + v for k, v in headers if k.lower() not in DROP_REQUEST_HEADERS)
        head.append(FORWARDED_HEADER + b": " + addr.encode())
        head.append(b"content-length: " + str(len(body)).encode())
        request = b"\r\n".join(head) + b"\r\n\r\n" + body
        conn = await self._connection(addr)
        try:
            async with asyncio.timeout(self.timeout_s):
                conn.writer.write(request)
                await conn.writer.drain()
                status, resp_headers, resp_body, keep_alive = await _read_response(conn.reader)
        except (OSError, EOFError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
            conn.close()
            raise UnavailableError(
                f"the leader at {addr} did not answer: {exc or type(exc).__name__}"
            ) from None
        except TimeoutError:
            conn.close()
            raise UnavailableError(
                f"the leader at {addr} did not answer within {self.timeout_s:g} s"
            ) from None
        if keep_alive and len(self._pool[addr]) < POOL_SIZE:
            conn.idle_since = time.monotonic()
            self._pool[addr].append(conn)
        else:
            conn.close()
        resp_headers.append((FORWARDED_HEADER, addr.encode()))
        return Forwarded(status, resp_headers, resp_body)

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
        return _Conn(reader, writer, time.monotonic())

    def close(self) -> None:
        for conns in self._pool.values():
            for conn in conns:
                conn.close()
        self._pool.clear()


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, list[tuple[bytes, bytes]], bytes, bool]:
    """(status, headers without hop-by-hop ones, body, keep-alive) of one HTTP/1.1 response."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head[:-4].split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
        raise ValueError(f"bad status line {lines[0][:80]!r}")
    status = int(parts[1])
    headers: list[tuple[bytes, bytes]] = []
    length: int | None = None
    chunked = False
    keep_alive = parts[0] == b"HTTP/1.1"
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep:
            raise ValueError(f"bad header line {line[:80]!r}")
        key, value = name.strip().lower(), value.strip()
        if key == b"content-length":
            length = int(value)
        elif key == b"transfer-encoding":
            chunked = b"chunked" in value.lower()
        elif key == b"connection":
            keep_alive = b"close" not in value.lower() and (keep_alive or b"keep-alive" in value.lower())
        if key not in DROP_RESPONSE_HEADERS:
            headers.append((key, value))
    if chunked:
        body = await _read_chunked(reader)
    elif length is not None:
        body = await reader.readexactly(length)
    elif status in (204, 304) or 100 <= status < 200:
        body = b""
    else:
        body = await reader.read()  # delimited by the connection's end
        keep_alive = False
    return status, headers, body, keep_alive


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    chunks: list[bytes] = []
    while True:
        size_line = await reader.readuntil(b"\r\n")
        size = int(size_line.split(b";", 1)[0].strip(), 16)
        if size == 0:
            while (await reader.readuntil(b"\r\n")) != b"\r\n":  # trailers
                pass
            return b"".join(chunks)
        chunks.append(await reader.readexactly(size))
        await reader.readexactly(2)
