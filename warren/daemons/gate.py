"""Admission of the connections to a manager's TCP servers (config.ConnectionLimits, docs/security.md).

A `ConnectionGate` per TCP server admits an accepted connection or closes it at once, before any TLS,
so that no client can hold the process's descriptors (the Raft transport, worker sessions, peers and
the store share RLIMIT_NOFILE). It caps connections per peer address and in total (a fraction of
RLIMIT_NOFILE); when full, the oldest idle connection (in its TLS handshake, or between requests) is
closed to admit the new one.

uvicorn's own `limit_concurrency` is not used: it answers 503 to requests past the limit, after the
connection (and its descriptor, and its TLS handshake) has been taken, so it bounds work, not sockets.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from warren.config import ConnectionLimits

if TYPE_CHECKING:
    from warren.daemons.servers import PeerProtocol

# Refused connections are logged in one line per this long at most; seconds.
_LOG_REFUSALS_EVERY_S = 10.0

log = logging.getLogger(__name__)


@dataclass(eq=False, slots=True)
class Connection:
    """One admitted connection: its socket, the task completing its TLS handshake, then its protocol."""

    sock: socket.socket
    peer: str
    task: asyncio.Task[None] | None = None
    protocol: PeerProtocol | None = None

    def idle(self) -> bool:
        """Still in its TLS handshake, or with no request in progress: the first to be shed."""
        return self.protocol is None or self.protocol.idle()

    def shed(self) -> None:
        """Close it now (room is needed, or the server stops)."""
        if self.protocol is not None and self.protocol.ready:
            self.protocol.abort()
            return
        if self.protocol is None:  # not handed to the loop yet: the socket is still ours
            self.sock.close()
        if self.task is not None:
            self.task.cancel()  # a handshake in progress: its transport is aborted


class ConnectionGate:
    """The connections one server holds: at most `max_per_peer` per peer address and `max_total` in
    all. Admission happens when a connection is accepted, before TLS; a refused connection is closed
    at once. When full, an idle connection of the address holding the most is shed to admit a new one
    (the oldest of them): a flood, even from many addresses, evicts itself before a client with few."""

    def __init__(self, limits: ConnectionLimits, nofile: int | None, label: str) -> None:
        self.limits = limits
        self.label = label
        self.max_total = limits.total_cap(nofile)
        self.max_per_peer = limits.per_peer_cap(self.max_total)
        # By peer address, each in insertion order (oldest first).
        self._by_peer: dict[str, dict[Connection, None]] = {}
        self._count = 0
        self.refused = 0
        self.shed = 0
        self._logged = 0  # refusals counted in the last log line
        self._logged_at = -_LOG_REFUSALS_EVERY_S

    def __len__(self) -> int:
        return self._count

    def admit(self, sock: socket.socket, peer: str) -> Connection | None:
        """The admitted connection, or None: the caller closes `sock`."""
        mine = self._by_peer.get(peer)
        if mine is not None and len(mine) >= self.max_per_peer:
            self._refuse(f"{peer} has {self.max_per_peer} connections open already (the most per address)")
            return None
        if self._count >= self.max_total:
            idle = self._idle_victim()
            if idle is None:
                self._refuse(f"{self._count} connections open (the most), none idle; last from {peer}")
                return None
            self.shed += 1
            self.release(idle)
            idle.shed()
        conn = Connection(sock, peer)
        self._by_peer.setdefault(peer, {})[conn] = None
        self._count += 1
        return conn

    def _refuse(self, why: str) -> None:
        # A flood is refused thousands of times a second: one line per LOG_REFUSALS_EVERY_S at most.
        self.refused += 1
        now = time.monotonic()
        if now - self._logged_at >= _LOG_REFUSALS_EVERY_S:
            log.warning("%s: %d connections refused (%s)", self.label, self.refused - self._logged, why)
            self._logged_at, self._logged = now, self.refused

    def _idle_victim(self) -> Connection | None:
        """The oldest idle connection of the address with the most connections that has an idle one."""
        for _, conns in sorted(self._by_peer.items(), key=lambda item: -len(item[1])):
            idle = next((c for c in conns if c.idle()), None)
            if idle is not None:
                return idle
        return None

    def release(self, conn: Connection) -> None:
        """Idempotent."""
        mine = self._by_peer.get(conn.peer)
        if mine is None or mine.pop(conn, False) is not None:
            return
        self._count -= 1
        if not mine:
            del self._by_peer[conn.peer]

    def close_all(self) -> None:
        """Shutdown: drop the connections still in their TLS handshake (uvicorn ends the others)."""
        for conn in [c for conns in self._by_peer.values() for c in conns]:
            if conn.protocol is None or not conn.protocol.ready:
                self.release(conn)
                conn.shed()
