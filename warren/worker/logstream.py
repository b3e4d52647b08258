"""Answering the leader's log requests: a task's output, read from its runtime, POSTed in chunks of
at most 64 KiB to /v1/dispatcher/logs/{id}, the last one marked with X-Warren-Log-End: 1.

Each request is streamed by its own asyncio task; a refused chunk (the client went away) ends it.
The leader answers a chunk it had to drop (its client reads too slowly) like any other, after
holding it at most config.LOG_STREAM_WAIT_S: the stream goes on, and the client sees how much was
dropped. A chunk is never larger than config.LOG_CHUNK_MAX_BYTES (the leader answers 413).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

from warren.errors import WarrenError
from warren.runtime.base import ContainerRuntime
from warren.worker.client import LOG_CHUNK_BYTES, WorkerClient

log = logging.getLogger(__name__)

# A log request -> the runtime and container holding its task's output (None, None: none here).
FindSource = Callable[[Mapping[str, Any]], tuple[ContainerRuntime | None, str | None]]


class LogForwarder:
    def __init__(self, client: WorkerClient, node: str, find: FindSource) -> None:
        self.client = client
        self.node = node
        self.find = find
        self._streams: dict[str, asyncio.Task[None]] = {}

    def open(self, request: Mapping[str, Any]) -> None:
        """Start streaming one request (once: a request handed over twice is streamed once)."""
        request_id = str(request.get("id") or "")
        if not request_id or request_id in self._streams:
            return
        self._streams[request_id] = asyncio.create_task(self._stream(request_id, request),
                                                        name=f"logs-{request_id}")

    async def close(self) -> None:
        tasks = list(self._streams.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _stream(self, request_id: str, request: Mapping[str, Any]) -> None:
        try:
            runtime, container_id = self.find(request)
            if runtime is None or container_id is None:
                note = f"warren: task {request.get('task_id')} has no container on {self.node} any more\n"
                await self.client.log_chunk(request_id, note.encode(), end=True)
                return
            tail = request.get("tail")
            source = runtime.logs(container_id, follow=bool(request.get("follow")),
                                  tail=int(tail) if tail is not None else None)
            async for chunk in coalesce(source, LOG_CHUNK_BYTES):
                if not await self.client.log_chunk(request_id, chunk, end=False):
                    return  # nobody waits for it any more
            await self.client.log_chunk(request_id, b"", end=True)
        except WarrenError as exc:  # no manager, or the node removed (the session loop says so)
            log.info("log request %s ended: %s", request_id, exc)
        finally:
            self._streams.pop(request_id, None)


# Pieces of a task's output read ahead of the POSTs, each at most the chunk limit: with 64 KiB
# chunks, at most 4 MiB read ahead per log request (then the runtime's reader waits).
_READ_AHEAD_PIECES = 64


async def coalesce(source: AsyncIterator[bytes], limit: int) -> AsyncIterator[bytes]:
    """`source`'s bytes in pieces of at most `limit`, joining what is already waiting into one piece
    (one POST per burst of lines, not per line), without waiting for more to arrive. Bounded: at most
    _READ_AHEAD_PIECES pieces of at most `limit` bytes wait, whatever size the source yields."""
    queue: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=_READ_AHEAD_PIECES)

    async def pump() -> None:
        try:
            async for piece in source:
                for start in range(0, len(piece), limit):
                    await queue.put(piece[start : start + limit])
        except Exception as exc:  # a task boundary: the reader must always end the stream
            log.info("reading a task's output stopped: %s", exc)
        await queue.put(None)

    reader = asyncio.create_task(pump())
    try:
        ended = False
        while not ended:
            item = await queue.get()
            if item is None:
                break
            buffer = bytearray(item)
            while len(buffer) < limit and not queue.empty():
                more = queue.get_nowait()
                if more is None:
                    ended = True
                    break
                buffer += more
            while buffer:
                yield bytes(buffer[:limit])
                del buffer[:limit]
    finally:
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)
