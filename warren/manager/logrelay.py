"""Relaying a task's output from its worker, through the leader, to the client that asked for it.

`service logs` opens one `LogRequest` per task, all feeding one `LogStream` (the client's answer).
The dispatcher hands a node's undelivered requests to its worker in the next session answer; the
worker POSTs the output in chunks, which `LogRelay.deliver` queues on the stream. The client going
away closes its requests, and the worker's next chunk for one of them is refused (it then stops).
Nothing here is replicated: a new leader starts with no requests, and the old leader's streams end.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from warren.errors import WarrenError

# Chunks queued on one stream before a worker's next chunk waits for the client to read; chunks
# (each at most 64 KiB, so at most ~4 MiB per client).
STREAM_QUEUE_CHUNKS = 64


class LogGoneError(WarrenError):
    """The log request is unknown or over (client gone, node down, leadership lost): the worker stops
    sending (the API answers 410)."""


@dataclass(eq=False, slots=True)
class LogRequest:
    id: str
    node: str
    task_id: str
    container_id: str
    follow: bool
    tail: int | None
    label: str  # the task's name, prefixed to its lines when a stream has several tasks
    stream: LogStream
    opened_at: float
    delivered: bool = False
    ended: bool = False

    def to_doc(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "task_id": self.task_id,
            "container_id": self.container_id,
            "follow": self.follow,
            "tail": self.tail,
        }


class LogStream:
    """What one client reads: the chunks of its requests, as bytes (lines prefixed with the task name
    when `prefixed`), until every request has ended."""

    def __init__(
        self, *, prefixed: bool, pickup_timeout_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.prefixed = prefixed
        self.pickup_timeout_s = pickup_timeout_s
        self.clock = clock
        self.requests: list[LogRequest] = []
        self._queue: asyncio.Queue[tuple[LogRequest, bytes | None]] = asyncio.Queue()
        self._drained = asyncio.Event()
        self._partial: dict[str, bytes] = {}

    async def put(self, req: LogRequest, data: bytes) -> None:
        """Queue a chunk; waits while the client is STREAM_QUEUE_CHUNKS behind."""
        while self._queue.qsize() >= STREAM_QUEUE_CHUNKS and not req.ended:
            self._drained.clear()
            await self._drained.wait()
        if req.ended:
            raise LogGoneError(f"log request {req.id} is over")
        self._queue.put_nowait((req, data))

    def end(self, req: LogRequest, note: str | None = None) -> None:
        """End one request's part of the stream (with a last line saying why, if given); idempotent."""
        if req.ended:
            return
        req.ended = True
        if note is not None:
            self._queue.put_nowait((req, f"warren: {note}\n".encode()))
        self._queue.put_nowait((req, None))
        self._drained.set()

    async def chunks(self) -> AsyncIterator[bytes]:
        open_ = {r.id for r in self.requests}  # an ended request's end marker is already queued
        while open_:
            try:
                async with asyncio.timeout(self._pickup_wait()):
                    req, data = await self._queue.get()
            except TimeoutError:
                now = self.clock()
                for r in self.requests:
                    if not r.delivered and now - r.opened_at >= self.pickup_timeout_s:
                        self.end(r, f"{r.label}: its worker did not pick up the request")
                continue
            self._drained.set()
            if data is None:
                open_.discard(req.id)
                rest = self._partial.pop(req.id, b"")
                if rest:
                    yield self._prefix(req, rest + b"\n")
                continue
            if not self.prefixed:
                yield data
                continue
            buf = self._partial.pop(req.id, b"") + data
            head, sep, rest = buf.rpartition(b"\n")
            if rest:
                self._partial[req.id] = rest
            if sep:
                yield self._prefix(req, head + b"\n")

    def _pickup_wait(self) -> float | None:
        waiting = [r.opened_at for r in self.requests if not r.delivered and not r.ended]
        if not waiting:
            return None
        return max(0.0, min(waiting) + self.pickup_timeout_s - self.clock())

    def _prefix(self, req: LogRequest, lines: bytes) -> bytes:
        if not self.prefixed:
            return lines
        label = req.label.encode() + b" | "
        return b"".join(label + line + b"\n" for line in lines[:-1].split(b"\n"))


@dataclass(slots=True)
class LogRelay:
    """The leader's open log requests, by ID and by node."""

    clock: Callable[[], float] = time.monotonic
    _by_id: dict[str, LogRequest] = field(default_factory=dict)

    def open(
        self,
        stream: LogStream,
        *,
        node: str,
        task_id: str,
        container_id: str,
        follow: bool,
        tail: int | None,
        label: str,
    ) -> LogRequest:
        req = LogRequest(
            id=secrets.token_hex(16),
            node=node,
            task_id=task_id,
            container_id=container_id,
            follow=follow,
            tail=tail,
            label=label,
            stream=stream,
            opened_at=self.clock(),
        )
        self._by_id[req.id] = req
        stream.requests.append(req)
        return req

    def get(self, request_id: str) -> LogRequest | None:
        return self._by_id.get(request_id)

    def has_pending(self, node: str) -> bool:
        return any(r.node == node and not r.delivered for r in self._by_id.values())

    def take_pending(self, node: str) -> list[LogRequest]:
        """The node's requests not handed to its worker yet (now marked handed)."""
        out = [r for r in self._by_id.values() if r.node == node and not r.delivered]
        for r in out:
            r.delivered = True
        return out

    async def deliver(self, request_id: str, data: bytes, end: bool) -> None:
        req = self._by_id.get(request_id)
        if req is None or req.ended:
            raise LogGoneError(f"no open log request {request_id!r} (the client went away?)")
        if data:
            await req.stream.put(req, data)
        if end:
            self.finish(req)

    def finish(self, req: LogRequest, note: str | None = None) -> None:
        """End a request (its client left, its worker is done or gone); idempotent."""
        self._by_id.pop(req.id, None)
        req.stream.end(req, note)

    def close_stream(self, stream: LogStream) -> None:
        for req in stream.requests:
            self.finish(req)

    def end_node(self, node: str, note: str) -> None:
        for req in [r for r in self._by_id.values() if r.node == node]:
            self.finish(req, f"{req.label}: {note}")

    def end_all(self, note: str) -> None:
        for req in list(self._by_id.values()):
            self.finish(req, f"{req.label}: {note}")
