"""The worker's ingress: it listens on every published ingress port of the cluster and forwards each
connection it accepts to one replica of that port's service, wherever the replica runs (an L4 TCP proxy
on the worker's own event loop: uvloop in the daemon).

- Balancing: round-robin over the port's backends, one turn per new connection. A backend that refuses
  the connection or does not accept it within `connect_timeout_s` is skipped for the next one, each
  tried at most once per connection; when none answers the client's connection is closed. What the
  client sends meanwhile is kept (up to PENDING_MAX, then its reading paused) and passed on.
- Bytes are copied as they come, with flow control both ways (a side whose send buffer is full stops
  the reading of the other) and half-close (a side's EOF is passed on as an EOF, the other direction
  keeps going); both ends are closed when both directions are done, or as soon as one end fails.
- `update(routes)` swaps the table at once: new connections use the new backends, established ones are
  left to finish; listeners of ports that left the table are closed, new ports bound. A port that
  cannot be bound (in use, privileged) is logged once and tried again at every later update.
- At most `max_connections` connections are proxied at once; a client beyond that is closed at once.
- A backend that refused or timed out a connection is tried after the port's other backends for
  `suspect_s` (passive ejection: a replica on a cut-off node costs one client the connect timeout, not
  every other client until the leader writes the node down); reaching it again, or its leaving the
  table, ends that.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Mapping, Sequence
from typing import cast

from warren.errors import InvalidError

log = logging.getLogger(__name__)

# Listen backlog of an ingress port (the kernel caps it at net.core.somaxconn): a burst of new clients
# waits in the kernel's queue instead of having its SYNs dropped.
BACKLOG = 1024
MAX_PORT = 65535
# What one end may send before the other is connected (a client's request while a backend is tried):
# kept, and past this much its reading is paused.
PENDING_MAX = 256 * 1024


@dataclasses.dataclass(frozen=True, slots=True)
class Backend:
    """Where one replica of a service is reached: its node's address and the host port it publishes."""

    addr: str
    port: int
    task_id: str
    node: str


@dataclasses.dataclass(slots=True)
class IngressCounters:
    """What the proxy did since it started (for metrics)."""

    # Connections forwarded to a backend, in all and per published port (ports in the table only).
    forwarded: int = 0
    per_port: dict[int, int] = dataclasses.field(default_factory=dict)
    # Clients closed at once: `max_connections` were being proxied.
    rejected: int = 0
    # Clients closed because no backend of their port answered (or the port had none).
    unrouted: int = 0
    # Connection attempts to a backend that were refused or timed out.
    connect_failures: int = 0


def _show(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class IngressProxy:
    """The listeners of the ingress ports and the connections they forward (see the module's doc)."""

    def __init__(
        self, host: str, *, connect_timeout_s: float, max_connections: int, suspect_s: float = 0.0
    ) -> None:
        self.host = host
        self.connect_timeout_s = connect_timeout_s
        self.max_connections = max_connections
        self.suspect_s = suspect_s
        # Backends that refused or timed out a connection, until when (monotonic) they are tried last.
        self._suspects: dict[Backend, float] = {}
        self.counters = IngressCounters()
        # Published port -> its backends; replaced whole by update() (new connections read it).
        self._routes: dict[int, tuple[Backend, ...]] = {}
        # Published port -> how many connections its round-robin has handed out.
        self._turns: dict[int, int] = {}
        self._servers: dict[int, asyncio.Server] = {}
        # Ports of the table that could not be bound (already logged), with the reason.
        self._unbindable: dict[int, str] = {}
        self._links: set[_Link] = set()
        self._at_limit = False  # the limit was hit and said so; said again once it was left
        self._lock = asyncio.Lock()
        self._closed = False

    @property
    def active(self) -> int:
        """Connections proxied (or connecting) now."""
        return len(self._links)

    def bound(self) -> dict[int, tuple[str, int]]:
        """Published port -> the (host, port) listening for it now."""
        out: dict[int, tuple[str, int]] = {}
        for port, server in self._servers.items():
            sockets = server.sockets
            if sockets:
                name = sockets[0].getsockname()
                out[port] = (str(name[0]), int(name[1]))
        return out

    async def update(self, routes: Mapping[int, Sequence[Backend]]) -> None:
        """Take a new table (published port -> backends): see the module's doc."""
        table: dict[int, tuple[Backend, ...]] = {}
        for port, backends in routes.items():
            if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= MAX_PORT:
                raise InvalidError(f"ingress port {port!r}: expected a port from 1 to {MAX_PORT}")
            table[port] = tuple(backends)
        async with self._lock:
            if self._closed:
                return
            self._routes = table
            self._turns = {port: self._turns.get(port, 0) for port in table}
            listed = {b for backends in table.values() for b in backends}
            self._suspects = {b: until for b, until in self._suspects.items() if b in listed}
            self.counters.per_port = {port: self.counters.per_port.get(port, 0) for port in table}
            for port in [p for p in self._servers if p not in table]:
                # Established connections keep going: close() stops the listening only.
                self._servers.pop(port).close()
                log.info("ingress: no longer listening on %s", _show(self.host, port))
            for port in [p for p in self._unbindable if p not in table]:
                del self._unbindable[port]
            for port in sorted(table):
                if port not in self._servers:
                    await self._listen(port)

    async def _listen(self, port: int) -> None:
        loop = asyncio.get_running_loop()
        try:
            server = await loop.create_server(
                lambda: _Link(self, port).client, self.host, port, backlog=BACKLOG, reuse_address=True,
            )
        except OSError as exc:
            reason = exc.strerror or str(exc)
            if port not in self._unbindable:
                log.warning("ingress: cannot listen on %s: %s (tried again when the cluster's table "
                            "changes)", _show(self.host, port), reason)
            self._unbindable[port] = reason
            return
        self._unbindable.pop(port, None)
        self._servers[port] = server
        log.info("ingress: listening on %s", _show(self.host, port))

    async def close(self) -> None:
        """Stop listening and close every connection."""
        async with self._lock:
            self._closed = True
            servers = list(self._servers.values())
            self._servers.clear()
            self._routes = {}
        for server in servers:
            server.close()
        connecting = []
        for link in list(self._links):
            task = link.abort()
            if task is not None:
                connecting.append(task)
        await asyncio.gather(*connecting, return_exceptions=True)
        for server in servers:
            await server.wait_closed()

    # -- the links' calls -----------------------------------------------------------------------------

    def _admit(self, link: _Link) -> tuple[Backend, ...] | None:
        """The backends to try for a new connection, in order (None: close it at once, counted)."""
        if len(self._links) >= self.max_connections:
            self.counters.rejected += 1
            if not self._at_limit:
                self._at_limit = True
                log.warning("ingress: %d connections are being proxied (ingress_max_connections): new "
                            "clients are closed at once", self.max_connections)
            return None
        backends = self._routes.get(link.port)
        if not backends:
            self.counters.unrouted += 1
            log.debug("ingress: a client of port %d closed: the port has no backend", link.port)
            return None
        turn = self._turns.get(link.port, 0)
        self._turns[link.port] = turn + 1
        first = turn % len(backends)
        self._links.add(link)
        order = backends[first:] + backends[:first]
        if not self._suspects:
            return order
        # A backend that failed lately is tried after the others (not left out: it may be the only one).
        now = asyncio.get_running_loop().time()
        late = {b for b in order if self._suspects.get(b, 0.0) > now}
        return tuple(b for b in order if b not in late) + tuple(b for b in order if b in late)

    def _failed(self, backend: Backend) -> None:
        """`backend` refused or timed out a connection: try it last for `suspect_s`."""
        self.counters.connect_failures += 1
        if self.suspect_s > 0:
            self._suspects[backend] = asyncio.get_running_loop().time() + self.suspect_s

    def _reached(self, backend: Backend) -> None:
        self._suspects.pop(backend, None)

    def _forwarded(self, port: int) -> None:
        self.counters.forwarded += 1
        if port in self.counters.per_port:
            self.counters.per_port[port] += 1

    def _done(self, link: _Link) -> None:
        self._links.discard(link)
        if self._at_limit and len(self._links) < self.max_connections:
            self._at_limit = False
            log.info("ingress: under ingress_max_connections again (%d connections)", len(self._links))


class _Side(asyncio.Protocol):
    """One end of a proxied connection: what it receives is written to the other end's transport."""

    def __init__(self, link: _Link) -> None:
        self.link = link
        self.transport: asyncio.Transport | None = None
        self.peer: _Side | None = None  # set once both ends are connected
        self.pending: list[bytes] = []  # received before that
        self.pending_size = 0
        self.eof = False  # this end sent EOF
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.link.made(self)

    def data_received(self, data: bytes) -> None:
        peer = self.peer
        if peer is None:
            # Still reading until joined, so that a client that resets meanwhile is let go at once.
            self.pending.append(data)
            self.pending_size += len(data)
            if self.pending_size >= PENDING_MAX:
                _pause(self.transport)
        elif peer.transport is not None and not peer.transport.is_closing():
            peer.transport.write(data)

    def eof_received(self) -> bool:
        self.eof = True
        if self.peer is not None:
            self.link.pass_eof(self)
        return True  # the other direction may still be going: the link closes the transport

    def pause_writing(self) -> None:
        # This end's send buffer is full: stop reading from the end that fills it.
        if self.peer is not None:
            _pause(self.peer.transport)

    def resume_writing(self) -> None:
        if self.peer is not None:
            _resume(self.peer.transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.link.lost(self)


def _pause(transport: asyncio.Transport | None) -> None:
    if transport is not None and not transport.is_closing():
        transport.pause_reading()


def _resume(transport: asyncio.Transport | None) -> None:
    if transport is not None and not transport.is_closing():
        transport.resume_reading()


def _drop(side: _Side) -> None:
    if side.transport is not None:
        side.transport.abort()


class _Link:
    """One client's connection: admitted (or closed at once), its backends tried in turn, then both
    ends joined until both are done."""

    def __init__(self, proxy: IngressProxy, port: int) -> None:
        self.proxy = proxy
        self.port = port
        self.client = _Side(self)
        self.backend: _Side | None = None
        self.connecting: asyncio.Task[None] | None = None
        self.admitted = False

    def made(self, side: _Side) -> None:
        transport = side.transport
        assert transport is not None
        if side is not self.client:
            return
        order = self.proxy._admit(self)
        if order is None:
            transport.close()
            return
        self.admitted = True
        self.connecting = asyncio.get_running_loop().create_task(
            self._connect(order), name=f"ingress-{self.port}"
        )

    async def _connect(self, order: tuple[Backend, ...]) -> None:
        try:
            for backend in order:
                if self.client.lost:
                    return
                side = await self._try(backend)
                if side is not None:
                    self.proxy._reached(backend)
                    self._join(side)
                    self.proxy._forwarded(self.port)
                    return
            self.proxy.counters.unrouted += 1
            log.debug("ingress: port %d: no backend answered (%d tried); client closed", self.port,
                      len(order))
            if self.client.transport is not None:
                self.client.transport.close()
        finally:
            self.connecting = None
            self._check_done()

    async def _try(self, backend: Backend) -> _Side | None:
        """The backend's end, connected; None if it refused or did not accept in time (counted)."""
        side = _Side(self)
        try:
            async with asyncio.timeout(self.proxy.connect_timeout_s):
                await asyncio.get_running_loop().create_connection(lambda: side, backend.addr, backend.port)
        except asyncio.CancelledError:
            _drop(side)  # connected just as it was cancelled: asyncio leaves the transport open
            raise
        except (OSError, TimeoutError) as exc:
            _drop(side)
            self.proxy._failed(backend)
            log.debug("ingress: port %d: backend %s (task %s on %s) not reached: %s", self.port,
                      _show(backend.addr, backend.port), backend.task_id, backend.node,
                      "timed out" if isinstance(exc, TimeoutError) else exc)
            return None
        return side

    def _join(self, backend: _Side) -> None:
        client = self.client
        self.backend = backend
        if client.lost:
            if backend.transport is not None:
                backend.transport.close()
            return
        client.peer, backend.peer = backend, client
        for side in (client, backend):
            for data in side.pending:
                side.data_received(data)
            side.pending.clear()
            side.pending_size = 0
        for side in (client, backend):
            if side.eof:
                self.pass_eof(side)
            elif side.lost:
                self.lost(side)
        _resume(client.transport)
        _resume(backend.transport)

    def pass_eof(self, side: _Side) -> None:
        """`side` sent EOF: so does the other end; once both have, both are closed."""
        peer = side.peer
        if peer is None or peer.transport is None:
            return
        if peer.transport.can_write_eof() and not peer.transport.is_closing():
            peer.transport.write_eof()
        else:
            peer.transport.close()
        if peer.eof:
            for end in (side, peer):
                if end.transport is not None:
                    end.transport.close()  # after what is buffered was sent

    def lost(self, side: _Side) -> None:
        """One end is gone (closed, reset, failed): the other is closed after what it has buffered."""
        if side is self.client and self.connecting is not None:
            self.connecting.cancel()
        peer = side.peer
        if peer is not None and peer.transport is not None and not peer.transport.is_closing():
            peer.transport.close()
        self._check_done()

    def _check_done(self) -> None:
        if not self.admitted or self.connecting is not None or not self.client.lost:
            return
        if self.backend is not None and not self.backend.lost:
            return
        self.admitted = False
        self.proxy._done(self)

    def abort(self) -> asyncio.Task[None] | None:
        """Close both ends now (the proxy is closing); the connecting task, if one is under way."""
        task = self.connecting
        if task is not None:
            task.cancel()
        for side in (self.client, self.backend):
            if side is not None and side.transport is not None:
                side.transport.abort()
        return task
