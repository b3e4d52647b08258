"""The manager's HTTP servers on uvicorn (the API over TLS and on a local unix socket; metrics),
started and stopped by the daemon.

Sockets are bound here, before uvicorn sees them, so an address in use is a clear error instead of
uvicorn's exit; uvicorn's own signal handling is off, because the daemon owns shutdown. The API's
protocol puts the verified client certificate's identity (or the unix socket's local-admin mark) in
each request's scope, parsed once per connection, for `warren.api.auth`.

Connections are bounded before anything else happens on them (warren.daemons.gate, docs/security.md):
sockets are accepted here, not by uvicorn, so admission sees the bare socket and its address; an
admitted one gets TLS with a handshake deadline of a few seconds (instead of asyncio's 60 s), and a
connection that completed its handshake but sends no request is closed after the idle timeout, as
between requests, and one whose request line and headers do not all arrive within the request-head
timeout of their first byte is closed too (slowloris). The local unix socket (0600, this user only)
is not gated: it is the operator's way in under a flood.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import resource
import socket
import ssl
from collections.abc import Generator
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from warren.api.auth import LOCAL_KEY, PEER_KEY
from warren.config import ConnectionLimits
from warren.daemons.gate import Connection, ConnectionGate
from warren.errors import ConfigError, WarrenError
from warren.formats import split_host_port
from warren.pki.peek import PeerIdentity, peer_identity

SOCKET_NAME = "warren.sock"
# Connections accepted per readiness event of a listening socket (then other work gets a turn).
_ACCEPT_BATCH = 128
# After accept() failed for want of descriptors, accepting resumes after this long; seconds.
_ACCEPT_PAUSE_S = 0.1

log = logging.getLogger(__name__)

_DEFAULT_LIMITS = ConnectionLimits()


def nofile_limit() -> int | None:
    """This process's soft RLIMIT_NOFILE (None: unlimited)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return None if soft == resource.RLIM_INFINITY else soft


def raise_nofile_limit() -> None:
    """Raise the soft RLIMIT_NOFILE to the hard one, at daemon start (as Go's runtime does): the
    connection caps are a fraction of the soft limit, and a service manager's default soft 1024 would
    leave the API 256 connections. Unchanged when the hard limit is unlimited (left to the system)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield  # the daemon installs the SIGTERM/SIGINT handlers

    async def main_loop(self) -> None:
        """uvicorn's loop wakes every 0.1 s to refresh the Date header (once a second) and look at
        `should_exit`: 10 wake-ups a second per server, 30 for a manager's three, idle or not, a
        measurable share of an idle manager's CPU (benches `footprint`). This one wakes once a
        second for the date, and at once when `stop` sets `should_exit` and calls `wake`."""
        self._wake = asyncio.Event()
        counter = 0  # on_tick refreshes the date when counter % 10 == 0: every tick here
        while not await self.on_tick(counter):
            counter = (counter + 10) % 864000
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), 1.0)

    def wake(self) -> None:
        wake: asyncio.Event | None = getattr(self, "_wake", None)
        if wake is not None:
            wake.set()


class PeerProtocol(HttpToolsProtocol):
    """uvicorn's HTTP protocol, plus who is on the other end of the connection, an idle timer from
    the start (a connection that never sends a request is closed like one idle between requests), and
    a deadline for each request's head (line and headers) from its first byte."""

    _extensions: dict[str, Any]

    def __init__(
        self,
        *args: Any,
        conn: Connection | None = None,
        gate: ConnectionGate | None = None,
        head_timeout_s: float = _DEFAULT_LIMITS.request_head_timeout_s,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self._conn = conn
        self._gate = gate
        self._head_timeout_s = head_timeout_s
        self._head_timer: asyncio.TimerHandle | None = None
        self.ready = False  # connection_made was called (after the TLS handshake, with TLS)
        if conn is not None:
            conn.protocol = self

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._extensions = _identity(transport)
        self.ready = True
        self.timeout_keep_alive_task = self.loop.call_later(
            self.timeout_keep_alive, self.timeout_keep_alive_handler
        )

    def connection_lost(self, exc: Exception | None) -> None:
        self._end_head_timer()
        if self._gate is not None and self._conn is not None:
            self._gate.release(self._conn)
        if self.ready:
            super().connection_lost(exc)

    def idle(self) -> bool:
        return not self.ready or self.cycle is None or self.cycle.response_complete

    def abort(self) -> None:
        self.transport.abort()

    def shutdown(self) -> None:
        """The server stops: a connection between requests is dropped at once. Closed the TLS way
        (uvicorn's default), asyncio waits for the peer's close_notify, which an idle pooled client
        (another manager's version probe, a CLI's keep-alive) never sends, and the stop waited out the
        whole grace (5 s). A connection with a response under way ends after it, as uvicorn does
        (a followed event stream ends first: warren.daemons.manager closes the event ring)."""
        if self.ready and (self.cycle is None or self.cycle.response_complete):
            self.transport.abort()
        else:
            super().shutdown()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.scope["extensions"] = dict(self._extensions)
        self._end_head_timer()
        self._head_timer = self.loop.call_later(self._head_timeout_s, self._head_too_slow)

    def on_headers_complete(self) -> None:
        self._end_head_timer()
        super().on_headers_complete()

    def _end_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_too_slow(self) -> None:
        self._head_timer = None
        log.debug("closing a connection whose request head took over %g s", self._head_timeout_s)
        self.transport.abort()


def _identity(transport: asyncio.BaseTransport) -> dict[str, Any]:
    """The request-scope extensions of a connection: the verified client certificate's identity (None:
    anonymous), and whether it came over the local unix socket."""
    peer: PeerIdentity | None = None
    sock = transport.get_extra_info("socket")
    local = sock is not None and sock.family == socket.AF_UNIX
    ssl_object = transport.get_extra_info("ssl_object")
    if ssl_object is not None:
        try:
            peer = peer_identity(ssl_object)  # read with ssl: no `cryptography` per connection
        except WarrenError:
            peer = None  # chained to our CA but not a node certificate: anonymous
    return {PEER_KEY: peer, LOCAL_KEY: local}


def bind(addr: str, field: str) -> socket.socket:
    host, port = split_host_port(addr, field=field)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {addr} ({field}): {exc.strerror or exc}") from None
    sock.listen(1024)
    sock.setblocking(False)
    return sock


def bind_unix(path: str) -> socket.socket:
    """A unix socket only this user can connect to (0600; a stale one from a crash is replaced)."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        sock.bind(path)
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {path}: {exc.strerror or exc}") from None
    finally:
        os.umask(old)
    os.chmod(path, 0o600)
    sock.listen(128)
    sock.setblocking(False)
    return sock


class HttpServer:
    """One uvicorn server on a bound socket. Connections are accepted here, not by uvicorn: each is
    admitted by the gate (TCP only; the unix socket is this user's alone) with the bare socket in hand,
    then handed to the loop with TLS and a handshake deadline (`connect_accepted_socket`)."""

    def __init__(
        self,
        app: Any,
        sock: socket.socket,
        label: str,
        *,
        grace_s: float,
        tls: ssl.SSLContext | None = None,
        limits: ConnectionLimits | None = None,
    ) -> None:
        self.addr = label
        self.sock = sock
        self.tls = tls  # our context: its certificate is reloaded in place on renewal
        limits = limits or ConnectionLimits()
        limits.validate()
        self.limits = limits
        self.gate = (
            None if sock.family == socket.AF_UNIX else ConnectionGate(limits, nofile_limit(), label)
        )
        config = uvicorn.Config(
            app,
            http=PeerProtocol,
            lifespan="off",
            access_log=False,
            log_level="warning",
            log_config=None,
            timeout_graceful_shutdown=int(max(1, grace_s)),
            timeout_keep_alive=limits.idle_timeout_s,  # type: ignore[arg-type]
        )
        config.load()
        self.server = _Server(config)
        self._task: asyncio.Task[None] | None = None
        self._factory: Any = None
        self._accepting = False
        self._resume: asyncio.TimerHandle | None = None

    async def start(self) -> None:
        # No sockets for uvicorn: it serves what _accept hands over.
        self._task = asyncio.create_task(self.server.serve(sockets=[]), name=f"http {self.addr}")
        while not self.server.started:
            if self._task.done():
                await self._task  # raises what stopped it
                raise ConfigError(f"the HTTP server on {self.addr} stopped while starting")
            await asyncio.sleep(0.005)
        self._factory = functools.partial(
            PeerProtocol,
            config=self.server.config,
            server_state=self.server.server_state,
            app_state=self.server.lifespan.state,
            gate=self.gate,
            head_timeout_s=self.limits.request_head_timeout_s,
        )
        self._accepting = True
        asyncio.get_running_loop().add_reader(self.sock.fileno(), self._accept)

    def _accept(self) -> None:
        loop = asyncio.get_running_loop()
        for _ in range(_ACCEPT_BATCH):
            try:
                sock, addr = self.sock.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                return
            except OSError as exc:  # EMFILE, ENFILE, ENOBUFS: the backlog waits a little
                log.warning("%s: cannot accept connections: %s", self.addr, exc.strerror or exc)
                loop.remove_reader(self.sock.fileno())
                self._resume = loop.call_later(_ACCEPT_PAUSE_S, self._resume_accepting)
                return
            peer = str(addr[0]) if isinstance(addr, tuple) and addr else ""
            conn = Connection(sock, peer) if self.gate is None else self.gate.admit(sock, peer)
            if conn is None:
                sock.close()
                continue
            sock.setblocking(False)
            conn.task = loop.create_task(self._serve(conn), name=f"accept {self.addr}")

    def _resume_accepting(self) -> None:
        self._resume = None
        if self._accepting:
            asyncio.get_running_loop().add_reader(self.sock.fileno(), self._accept)

    async def _serve(self, conn: Connection) -> None:
        """Hand an admitted socket to the loop: TLS (within the handshake deadline), then uvicorn."""
        loop = asyncio.get_running_loop()
        try:
            if self.tls is None:
                await loop.connect_accepted_socket(
                    functools.partial(self._factory, conn=conn), conn.sock
                )
            else:
                await loop.connect_accepted_socket(
                    functools.partial(self._factory, conn=conn),
                    conn.sock,
                    ssl=self.tls,
                    ssl_handshake_timeout=self.limits.tls_handshake_timeout_s,
                )
        except BaseException as exc:
            if self.gate is not None:
                self.gate.release(conn)
            if conn.protocol is None:
                conn.sock.close()
            if not isinstance(exc, Exception | asyncio.CancelledError):
                raise
            log.debug("%s: connection from %s ended before serving: %r", self.addr, conn.peer, exc)
        finally:
            conn.task = None

    async def stop(self) -> None:
        self._accepting = False
        if self._resume is not None:
            self._resume.cancel()
        with contextlib.suppress(ValueError, OSError):
            asyncio.get_running_loop().remove_reader(self.sock.fileno())
        # Closed now, not once uvicorn is done: requests in progress may hold the stop for up to the
        # grace, and a listening socket nobody accepts from any more lets the kernel complete new
        # connections into its backlog, where they hang unanswered until it closes. A follower
        # forwarding a write to the leader that just handed over would wait out the whole grace
        # (docs/decisions.md, "A stopping manager refuses new connections at once"); refused, it
        # answers 503 at once and the client retries elsewhere.
        self._close_listener()
        if self.gate is not None:
            self.gate.close_all()
        self.server.should_exit = True
        self.server.wake()
        if self._task is not None:
            await self._task

    def _close_listener(self) -> None:
        """Stop listening: connections not yet accepted are refused (reset); the unix socket's path
        goes first, so a new connection finds no socket there."""
        if self.sock.family == socket.AF_UNIX:
            with contextlib.suppress(OSError):
                os.unlink(self.sock.getsockname())
        self.sock.close()
