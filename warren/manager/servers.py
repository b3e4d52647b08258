"""The manager's HTTP servers on uvicorn (the API over TLS and on a local unix socket; metrics),
started and stopped by the daemon.

Sockets are bound here, before uvicorn sees them, so an address in use is a clear error instead of
uvicorn's exit; uvicorn's own signal handling is off, because the daemon owns shutdown. The API's
protocol puts the verified client certificate's identity (or the unix socket's local-admin mark) in
each request's scope, parsed once per connection, for `warren.api.auth`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import ssl
from collections.abc import Generator
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from warren.api.auth import LOCAL_KEY, PEER_KEY
from warren.config import split_host_port
from warren.errors import ConfigError, WarrenError
from warren.pki.certs import PeerIdentity, identity_der

SOCKET_NAME = "warren.sock"


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield  # the daemon installs the SIGTERM/SIGINT handlers


class PeerProtocol(HttpToolsProtocol):
    """uvicorn's HTTP protocol, plus who is on the other end of the connection."""

    _extensions: dict[str, Any]

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        peer: PeerIdentity | None = None
        sock = transport.get_extra_info("socket")
        local = sock is not None and sock.family == socket.AF_UNIX
        ssl_object = transport.get_extra_info("ssl_object")
        if ssl_object is not None:
            der = ssl_object.getpeercert(binary_form=True)
            if der:
                try:
                    peer = identity_der(der)
                except WarrenError:
                    peer = None  # chained to our CA but not a node certificate: anonymous
        self._extensions = {PEER_KEY: peer, LOCAL_KEY: local}

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.scope["extensions"] = dict(self._extensions)


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
    def __init__(
        self,
        app: Any,
        sock: socket.socket,
        label: str,
        *,
        grace_s: float,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.addr = label
        self.sock = sock
        config = uvicorn.Config(
            app,
            http=PeerProtocol,
            lifespan="off",
            access_log=False,
            log_level="warning",
            log_config=None,
            timeout_graceful_shutdown=int(max(1, grace_s)),
        )
        config.load()
        config.ssl = tls  # our context: its certificate is reloaded in place on renewal
        self.server = _Server(config)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self.server.serve(sockets=[self.sock]), name=f"http {self.addr}")
        while not self.server.started:
            if self._task.done():
                await self._task  # raises what stopped it
                raise ConfigError(f"the HTTP server on {self.addr} stopped while starting")
            await asyncio.sleep(0.005)

    async def stop(self) -> None:
        self.server.should_exit = True
        if self._task is not None:
            await self._task
        self.sock.close()
        if self.sock.family == socket.AF_UNIX:
            with contextlib.suppress(OSError):
                os.unlink(self.sock.getsockname())
