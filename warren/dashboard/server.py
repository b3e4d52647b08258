"""Run the dashboard: bind (loopback unless told otherwise), make this run's token, serve with uvicorn."""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
from collections.abc import Callable

from warren.config import DashboardSettings
from warren.dashboard.app import DashboardApp, Site
from warren.dashboard.upstream import Upstream
from warren.errors import ConfigError
from warren.formats import join_host_port


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on host:port (port 0: any free one); ConfigError if it cannot be had."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ConfigError(f"--bind {host}: {exc.strerror}") from None
    family, _, _, _, address = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {join_host_port(host, port)}: {exc.strerror or exc}") from None
    sock.setblocking(False)
    return sock


def load_token(path: str | None, size: int) -> str:
    """This run's token: random, or with `path` the one kept there (made, owner-only, if absent), so
    that an open page keeps working when the dashboard is restarted."""
    if path is None:
        return secrets.token_urlsafe(size)
    try:
        with open(path, encoding="ascii") as f:
            token = f.read().strip()
    except FileNotFoundError:
        token = secrets.token_urlsafe(size)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="ascii") as f:
                f.write(token + "\n")
        except OSError as exc:
            raise ConfigError(f"--token-file {path}: {exc.strerror or exc}") from None
        return token
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"--token-file {path}: {exc}") from None
    if os.stat(path).st_mode & 0o077:
        raise ConfigError(f"--token-file {path}: readable by others (chmod 600 it)")
    if len(token) < 22 or not token.replace("-", "").replace("_", "").isalnum():
        raise ConfigError(f"--token-file {path}: not a token (at least 22 URL-safe characters)")
    return token


def serve(bases: list[str], uds: str | None, verify: object, settings: DashboardSettings,
          announce: Callable[[str], None], token_file: str | None = None) -> None:
    """Serve until interrupted; `announce` gets the URL (with the token) once the socket listens."""
    import uvicorn

    settings.validate()
    sock = bind(settings.bind, settings.port)
    port = sock.getsockname()[1]
    token = load_token(token_file, settings.token_bytes)
    site = Site(settings.bind, port)
    app = DashboardApp(Upstream(bases, verify, settings, uds=uds), token, site)
    config = uvicorn.Config(app, log_level="warning", lifespan="on", access_log=False,
                            timeout_graceful_shutdown=1)
    server = uvicorn.Server(config)
    announce(f"{site.origin}/?token={token}")
    try:
        asyncio.run(server.serve(sockets=[sock]))
    finally:
        sock.close()
