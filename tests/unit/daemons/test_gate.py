"""The connections an API server admits stay bounded (docs/security.md): caps that follow the descriptor
limit, per address, and an idle connection of the biggest address shed to make room."""

from __future__ import annotations

import socket

from warren import config
from warren.daemons.gate import Connection, ConnectionGate


class _Busy:
    """A protocol with a request in progress (not idle)."""

    ready = True

    def idle(self) -> bool:
        return False


def test_connection_caps_follow_the_descriptor_limit() -> None:
    limits = config.ConnectionLimits()
    assert limits.total_cap(1024) == 256 and limits.per_peer_cap(256) == 64
    assert limits.total_cap(None) == limits.max_connections == limits.total_cap(10**6)
    assert limits.per_peer_cap(limits.total_cap(20_000)) == limits.max_per_peer


def test_the_gate_caps_each_address_and_sheds_an_idle_connection_of_the_biggest() -> None:
    gate = ConnectionGate(config.ConnectionLimits(max_per_peer=3, max_connections=12), None, "test")
    assert (gate.max_total, gate.max_per_peer) == (12, 3)
    socks: list[socket.socket] = []

    def admit(peer: str) -> Connection | None:
        a, b = socket.socketpair()
        socks.extend((a, b))
        return gate.admit(a, peer)

    try:
        mine = [admit("10.0.0.1") for _ in range(3)]
        assert all(mine) and admit("10.0.0.1") is None and gate.refused == 1
        flood = [admit("10.0.0.2") for _ in range(3)] + [admit("10.0.0.3") for _ in range(3)]
        assert all(flood) and len(gate) == 9
        for c in mine:  # the client's connections are busy; the others idle (in their handshake)
            assert c is not None
            c.protocol = _Busy()  # type: ignore[assignment]
        newer = [admit(f"10.0.1.{i}") for i in range(3)]
        assert all(newer) and len(gate) == 12
        fresh = admit("10.0.2.1")  # full: an idle connection of 10.0.0.2 or .3 (3 each) makes room
        assert fresh is not None and len(gate) == 12 and gate.shed == 1
        shed = [c for c in flood if c is not None and c.sock.fileno() == -1]
        assert len(shed) == 1 and shed[0].peer in ("10.0.0.2", "10.0.0.3")
        gate.release(shed[0])  # idempotent: already released when shed
        assert len(gate) == 12
        for c in [*flood, *newer, fresh]:
            if c is not None:
                c.protocol = _Busy()  # type: ignore[assignment]
        assert admit("10.0.3.1") is None, "nothing idle: a new connection is refused"
        assert gate.refused == 2
    finally:
        for s in socks:
            s.close()
