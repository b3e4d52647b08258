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

from warren.config import LOG_LINE_MAX_BYTES, LOG_STREAM_QUEUE_BYTES, LOG_STREAM_WAIT_S
from warren.errors import WarrenError


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
    dropped: int = 0  # bytes of this request's output dropped since the last marker

    def to_doc(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "task_id": self.task_id,
            "container_id": self.container_id,
            "follow": self.follow,
            "tail": self.tail,
        }


def dropped_marker(size: int) -> bytes:
    return f"[warren: {size} bytes dropped]".encode()


class LogStream:
    """What one client reads: the chunks of its requests, as bytes (lines prefixed with the task name
    when `prefixed`), until every request has ended.

    Bounded whatever the task prints or the client reads (docs/security.md):
    - at most `queue_bytes` of output wait for the client (plus one chunk, at most
      LOG_CHUNK_MAX_BYTES, and the end notes). A chunk that finds the queue full waits `wait_s` for
      the client to read, then is dropped and counted; the client then reads a
      "[warren: N bytes dropped]" line where the output is missing. Waiting a little makes a briefly
      slow client lose nothing (the worker's POST is held, so the worker reads its task's output more
      slowly); dropping after that means a stuck client never holds a worker's request for long nor
      makes the leader buffer.
    - when prefixed, a partial line (no newline yet) is kept per request, at most `line_bytes`: a
      longer line is split, each piece prefixed as a line of its own.
    """

    def __init__(
        self,
        *,
        prefixed: bool,
        pickup_timeout_s: float,
        clock: Callable[[], float] = time.monotonic,
        queue_bytes: int = LOG_STREAM_QUEUE_BYTES,
        wait_s: float = LOG_STREAM_WAIT_S,
        line_bytes: int = LOG_LINE_MAX_BYTES,
    ) -> None:
        self.prefixed = prefixed
        self.pickup_timeout_s = pickup_timeout_s
        self.clock = clock
        self.queue_bytes = queue_bytes
        self.wait_s = wait_s
        self.line_bytes = line_bytes
        self.requests: list[LogRequest] = []
        # (request, bytes, is_note): output, or a line of Warren's own; bytes None: the request ended.
        self._queue: asyncio.Queue[tuple[LogRequest, bytes | None, bool]] = asyncio.Queue()
        self._queued = 0  # bytes of output in _queue
        self._drained = asyncio.Event()
        self._partial: dict[str, bytes] = {}
        self._mid_line = False  # unprefixed: the last byte given to the client was not a newline
        self.dropped_total = 0  # bytes dropped over the stream's life (tests, logs)

    @property
    def queued_bytes(self) -> int:
        return self._queued

    async def put(self, req: LogRequest, data: bytes) -> None:
        """Queue a chunk; while the client is `queue_bytes` behind, wait up to `wait_s` for it to read,
        then drop the chunk (counted, and shown to the client as a marker line)."""
        deadline = asyncio.get_running_loop().time() + self.wait_s
        while self._queued and self._queued + len(data) > self.queue_bytes and not req.ended:
            self._drained.clear()
            try:
                async with asyncio.timeout_at(deadline):
                    await self._drained.wait()
            except TimeoutError:
                break
        if req.ended:
            raise LogGoneError(f"log request {req.id} is over")
        if self._queued and self._queued + len(data) > self.queue_bytes:
            req.dropped += len(data)
            self.dropped_total += len(data)
            return
        if req.dropped:
            self._queue_marker(req)
        self._queued += len(data)
        self._queue.put_nowait((req, data, False))

    def _queue_marker(self, req: LogRequest) -> None:
        # The marker is not output: it does not count against queue_bytes (one per run of drops).
        self._queue.put_nowait((req, dropped_marker(req.dropped), True))
        req.dropped = 0

    def end(self, req: LogRequest, note: str | None = None) -> None:
        """End one request's part of the stream (with a last line saying why, if given); idempotent."""
        if req.ended:
            return
        req.ended = True
        if req.dropped:
            self._queue_marker(req)
        if note is not None:
            self._queue.put_nowait((req, f"warren: {note}".encode(), True))
        self._queue.put_nowait((req, None, False))
        self._drained.set()

    async def chunks(self) -> AsyncIterator[bytes]:
        open_ = {r.id for r in self.requests}  # an ended request's end marker is already queued
        while open_:
            try:
                async with asyncio.timeout(self._pickup_wait()):
                    req, data, is_note = await self._queue.get()
            except TimeoutError:
                now = self.clock()
                for r in self.requests:
                    if not r.delivered and now - r.opened_at >= self.pickup_timeout_s:
                        self.end(r, f"{r.label}: its worker did not pick up the request")
                continue
            if data is None:
                open_.discard(req.id)
                rest = self._partial.pop(req.id, b"")
                if rest:
                    yield self._prefix(req, rest + b"\n")
                continue
            if is_note:
                out = self._note(req, data)
            else:
                self._queued -= len(data)
                self._drained.set()
                out = self._output(req, data)
            if out:
                yield out

    def _output(self, req: LogRequest, data: bytes) -> bytes:
        if not self.prefixed:
            self._mid_line = not data.endswith(b"\n")
            return data
        buf = self._partial.pop(req.id, b"") + data  # the partial part is at most line_bytes
        head, sep, rest = buf.rpartition(b"\n")
        if not sep:
            head, rest = b"", buf
        lines = head + sep
        if len(rest) > self.line_bytes:  # split an over-long line: bounded, and the client sees it
            cut = len(rest) - len(rest) % self.line_bytes
            if cut == len(rest):
                cut -= self.line_bytes
            lines += b"".join(
                rest[i : i + self.line_bytes] + b"\n" for i in range(0, cut, self.line_bytes)
            )
            rest = rest[cut:]
        if rest:
            self._partial[req.id] = rest
        return self._prefix(req, lines) if lines else b""

    def _note(self, req: LogRequest, text: bytes) -> bytes:
        """A line of Warren's own, on a line of its own even if the task's output stopped mid-line."""
        if not self.prefixed:
            lead = b"\n" if self._mid_line else b""
            self._mid_line = False
            return lead + text + b"\n"
        rest = self._partial.pop(req.id, b"")
        return self._prefix(req, (rest + b"\n" if rest else b"") + text + b"\n")

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
