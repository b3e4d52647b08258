"""A blocking byte stream (a followed container log) read in a thread of its own and handed to the
event loop with backpressure: the thread waits for room before it hands over another chunk, so a
slow reader never makes the worker buffer a whole log."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Protocol

log = logging.getLogger(__name__)


class ByteStream(Protocol):
    """An iterator of chunks that another thread can close (which ends a read under way)."""

    def __iter__(self) -> Iterator[bytes]: ...

    def close(self) -> None: ...


async def read_in_thread(stream: ByteStream, *, name: str, max_waiting: int) -> AsyncIterator[bytes]:
    """`stream`'s chunks, read by the daemon thread `name`, at most `max_waiting` of them waiting for
    the consumer. Ends when the stream ends or breaks; closing the generator closes the stream."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[bytes | None] = asyncio.Queue()
    room = threading.Semaphore(max_waiting)
    done = threading.Event()

    def pump() -> None:
        try:
            for chunk in stream:
                room.acquire()
                if done.is_set():
                    break
                loop.call_soon_threadsafe(queue.put_nowait, chunk)
        except Exception as exc:  # noqa: BLE001 - thread boundary: the stream was closed or broke
            log.debug("%s ended: %r", name, exc)
        finally:
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody reads any more
                loop.call_soon_threadsafe(queue.put_nowait, None)

    threading.Thread(target=pump, name=name, daemon=True).start()
    try:
        while (chunk := await queue.get()) is not None:
            room.release()
            yield chunk
    finally:
        done.set()
        with contextlib.suppress(Exception):
            stream.close()  # unblocks the reader thread's read
        room.release()  # and its wait for room
