"""Buffers fed from the network stay bounded (docs/security.md): the log relay's per-client queue and
partial lines, the worker's read-ahead, the dispatcher's pending status updates per worker, and the
connections an API server admits."""

from __future__ import annotations

import asyncio
import re
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from tests.unit.manager.test_dispatcher import SETTINGS, World, status
from warren import config
from warren.daemons.gate import Connection, ConnectionGate
from warren.errors import UnavailableError
from warren.manager.logrelay import LogRelay, LogRequest, LogStream
from warren.store import commands as c
from warren.worker.client import LOG_CHUNK_BYTES
from warren.worker.logstream import coalesce

CHUNK = 64 * 1024
MIB = 1024 * 1024


def _open(relay: LogRelay, stream: LogStream, label: str = "web.1", node: str = "n1") -> LogRequest:
    req = relay.open(stream, node=node, task_id=label, container_id="c", follow=True, tail=None, label=label)
    relay.take_pending(node)
    return req


def test_the_worker_chunk_fits_the_route_limit() -> None:
    assert LOG_CHUNK_BYTES <= config.LOG_CHUNK_MAX_BYTES <= config.LOG_STREAM_QUEUE_BYTES


async def test_a_line_without_newline_is_split_when_several_tasks_are_shown() -> None:
    """10 MiB with no newline from one of two tasks: every line the client reads is at most
    LOG_LINE_MAX_BYTES long (plus its prefix), nothing is lost, and the partial line kept on the
    leader never passes the cap."""

    relay = LogRelay()
    stream = LogStream(prefixed=True, pickup_timeout_s=5)
    a, b = _open(relay, stream, "web.1", "n1"), _open(relay, stream, "web.2", "n2")
    got: list[bytes] = []

    async def read() -> None:
        async for piece in stream.chunks():
            got.append(piece)

    reader = asyncio.create_task(read())
    total = 10 * 1024 * 1024
    for _ in range(total // CHUNK):
        await relay.deliver(a.id, b"x" * CHUNK, False)
        assert all(len(p) <= stream.line_bytes for p in stream._partial.values())
    await relay.deliver(a.id, b"", True)
    await relay.deliver(b.id, b"hello\n", True)
    await reader
    lines = b"".join(got).split(b"\n")
    assert lines[-1] == b""
    assert b"web.2 | hello" in lines
    mine = [line for line in lines if line.startswith(b"web.1 | ")]
    assert max(len(line) for line in mine) == len(b"web.1 | ") + config.LOG_LINE_MAX_BYTES
    assert sum(len(line) - len(b"web.1 | ") for line in mine) == total
    assert stream.dropped_total == 0


async def test_a_client_that_does_not_read_gets_a_dropped_marker_not_a_growing_queue() -> None:
    """The client stops reading: the leader keeps at most queue_bytes (plus a chunk); a worker's chunk
    waits at most wait_s and is then dropped; when the client reads again it sees what was queued, a
    "[warren: N bytes dropped]" line with the exact count, then what came after."""

    relay = LogRelay()
    stream = LogStream(prefixed=False, pickup_timeout_s=5, queue_bytes=4 * CHUNK, wait_s=0.05)
    req = _open(relay, stream)
    loop = asyncio.get_running_loop()
    for i in range(4):
        await relay.deliver(req.id, bytes([65 + i]) * (CHUNK - 1) + b"\n", False)
    for _ in range(20):
        start = loop.time()
        await relay.deliver(req.id, b"z" * CHUNK, False)
        assert loop.time() - start < 1.0, "a chunk must not wait on a stuck client for long"
        assert stream.queued_bytes <= stream.queue_bytes
    assert stream.dropped_total == 20 * CHUNK
    pieces = stream.chunks()
    first = [await anext(pieces) for _ in range(4)]
    assert [p[:1] for p in first] == [b"A", b"B", b"C", b"D"]
    await relay.deliver(req.id, b"after\n", True)
    rest = b"".join([p async for p in pieces])
    assert rest == f"[warren: {20 * CHUNK} bytes dropped]\nafter\n".encode()


async def test_the_marker_starts_a_line_of_its_own_and_is_prefixed_with_several_tasks() -> None:
    relay = LogRelay()
    one = LogStream(prefixed=False, pickup_timeout_s=5, queue_bytes=CHUNK, wait_s=0.01)
    req = _open(relay, one)
    await relay.deliver(req.id, b"no newline yet" + b"." * (CHUNK - 14), False)
    await relay.deliver(req.id, b"lost", False)
    await relay.deliver(req.id, b"", True)
    out = b"".join([p async for p in one.chunks()])
    assert out.endswith(b".\n[warren: 4 bytes dropped]\n"), out[-80:]

    many = LogStream(prefixed=True, pickup_timeout_s=5, queue_bytes=CHUNK, wait_s=0.01)
    a, b = _open(relay, many, "web.1", "n1"), _open(relay, many, "web.2", "n2")
    await relay.deliver(a.id, b"x" * CHUNK, False)
    await relay.deliver(a.id, b"y" * 10, False)
    await relay.deliver(a.id, b"", True)
    await relay.deliver(b.id, b"", True)
    lines = b"".join([p async for p in many.chunks()]).decode().splitlines()
    assert lines[-1] == "web.1 | [warren: 10 bytes dropped]"
    assert all(re.match(r"^web\.1 \| x+$", line) for line in lines[:-1]), lines[:-1]


async def test_pending_status_updates_per_worker_are_bounded(world: World) -> None:
    """A worker flooding the leader with updates of distinct tasks while a batch is in flight gets 503
    past status_pending_per_node_max; updates of tasks already pending merge and are accepted."""
    w1, w2 = world.worker("worker-aaaaa1"), world.worker("worker-aaaaa2")
    world.task("t1", w1)
    settings = replace(SETTINGS, status_pending_per_node_max=10, status_batch_max=4)

    d = world.dispatcher(settings)
    d.start()
    gate = world.propose.gate = asyncio.Event()
    first = asyncio.create_task(d.report_status(w1, [status("t1", "starting")]))
    await asyncio.sleep(0.01)  # `first` is proposed and held at the gate: the next ones wait
    waiting = [asyncio.create_task(d.report_status(w1, [status(f"x{i}", "running") for i in range(10)]))]
    await asyncio.sleep(0.01)
    with pytest.raises(UnavailableError, match="at most 10"):
        await d.report_status(w1, [status("x-one-more", "running")])
    # the same tasks again merge (no new pending entries); another worker has its own bound
    waiting.append(asyncio.create_task(d.report_status(w1, [status("x3", "complete")])))
    others = [status(f"y{i}", "running") for i in range(10)]
    waiting.append(asyncio.create_task(d.report_status(w2, others)))
    await asyncio.sleep(0.01)
    assert not any(t.done() for t in waiting)
    gate.set()
    await asyncio.gather(first, *waiting)
    sizes = [len(b.updates) for b in world.propose.of(c.SetTaskStatuses)]
    assert sizes[0] == 1 and max(sizes) <= 4 and sum(sizes) == 21, sizes
    await d.report_status(w1, [status("x-one-more", "running")])  # the flush made room
    await d.stop()


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path)


# -- the worker's read-ahead ---------------------------------------------------------------------------


async def test_the_worker_reads_ahead_at_most_a_few_mib_of_a_tasks_output() -> None:
    """Its runtime hands over 1 MiB pieces while the POSTs are stuck: the reader stops after about
    _READ_AHEAD_PIECES chunks (4 MiB), not 256 pieces of any size."""

    pulled = 0

    async def source() -> AsyncIterator[bytes]:
        nonlocal pulled
        for _ in range(100):
            pulled += 1
            yield b"a" * MIB

    pieces = coalesce(source(), CHUNK)
    first = await anext(pieces)  # then the "POST" hangs: nothing more is taken
    assert len(first) <= CHUNK
    for _ in range(50):
        await asyncio.sleep(0)
    assert pulled <= 6, f"{pulled} MiB read ahead"
    rest = [first] + [p async for p in pieces]
    assert sum(map(len, rest)) == 100 * MIB and max(map(len, rest)) <= CHUNK


# -- the API's connection gate -------------------------------------------------------------------------


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


def test_a_daemon_raises_its_soft_descriptor_limit_to_the_hard_one() -> None:
    # The connection caps are fractions of the soft limit: a daemon started with a low soft limit (a
    # service manager's default 1024) raises it to the hard limit first.
    code = (
        "import resource\n"
        "from warren.daemons.servers import raise_nofile_limit\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (256, 1024))\n"
        "raise_nofile_limit()\n"
        "print(*resource.getrlimit(resource.RLIMIT_NOFILE))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["1024", "1024"]
