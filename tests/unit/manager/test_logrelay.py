"""The log relay stays bounded whatever its clients and workers do (docs/security.md): a line without a
newline is cut, a client that does not read gets a "dropped" marker instead of a growing queue."""

from __future__ import annotations

import asyncio
import re

from warren import config
from warren.manager.logrelay import LogRelay, LogRequest, LogStream
from warren.worker.client import LOG_CHUNK_BYTES

CHUNK = 64 * 1024


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
