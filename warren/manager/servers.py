"""The manager's two HTTP servers (API and metrics) on uvicorn, started and stopped by the daemon.

Sockets are bound here, before uvicorn sees them, so an address in use is a clear error instead of
uvicorn's exit; uvicorn's own signal handling is off, because the daemon owns shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Generator
from typing import Any

import uvicorn

from warren.config import split_host_port
from warren.errors import ConfigError


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield  # the daemon installs the SIGTERM/SIGINT handlers


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


class HttpServer:
    def __init__(self, app: Any, addr: str, field: str, *, grace_s: float) -> None:
        self.addr = addr
        self.sock = bind(addr, field)
        config = uvicorn.Config(
            app,
            http="httptools",
            lifespan="off",
            access_log=False,
            log_level="warning",
            log_config=None,
            timeout_graceful_shutdown=int(max(1, grace_s)),
        )
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
