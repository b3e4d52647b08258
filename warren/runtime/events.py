"""A reconnecting event stream read in a thread and handed to an asyncio loop.

The Docker runtime's exits come from the engine's event stream, which is a blocking iterator and
ends when the engine restarts. `EventFeed` owns the thread that reads it: every event goes to the
loop (`call_soon_threadsafe`), a broken or refused stream is reopened with backoff, and every
(re)connection is announced so the owner can look for what it missed. Nothing here knows Docker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any, Protocol

log = logging.getLogger(__name__)


class Stream(Protocol):
    """What `open_stream` returns: an iterator of events that another thread can close."""

    def __iter__(self) -> Iterator[dict[str, Any]]: ...

    def close(self) -> None: ...


class EventFeed:
    """Follows `open_stream(since)` until closed. `on_connect()` and `on_event(event)` run in the
    loop given to `start`; `since` is the time of the last event seen (None at first), so a stream
    reopened while the engine kept running replays what happened in between."""

    def __init__(
        self,
        open_stream: Callable[[int | None], Stream],
        *,
        on_event: Callable[[dict[str, Any]], None],
        on_connect: Callable[[], None],
        unreachable: tuple[type[BaseException], ...],
        retry_initial_s: float,
        retry_max_s: float,
        name: str,
    ) -> None:
        self._open = open_stream
        self._on_event = on_event
        self._on_connect = on_connect
        self._unreachable = unreachable
        self._retry_initial_s = retry_initial_s
        self._retry_max_s = retry_max_s
        self._name = name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self.stream: Stream | None = None  # the open stream, if any (tests break it on purpose)

    @property
    def started(self) -> bool:
        return self._thread is not None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._thread is not None:
            return
        self._loop = loop
        self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        self._thread.start()

    async def close(self) -> None:
        self._stopping.set()
        stream = self.stream
        if stream is not None:
            with contextlib.suppress(Exception):  # already closed or broken: either way it ends
                stream.close()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 5.0)

    def _run(self) -> None:
        delay = self._retry_initial_s
        since: int | None = None
        while not self._stopping.is_set():
            try:
                stream = self._open(since)
            except self._unreachable as exc:
                log.debug("%s: cannot open the event stream (%s); retrying in %.1fs", self._name, exc, delay)
                self._stopping.wait(delay)
                delay = min(delay * 2, self._retry_max_s)
                continue
            self.stream = stream
            if self._stopping.is_set():  # close() ran before it could see this stream
                stream.close()
                break
            self._to_loop(self._on_connect)
            delay = self._retry_initial_s
            try:
                for event in stream:
                    since = event.get("time", since)
                    self._to_loop(self._on_event, event)
            except Exception as exc:  # noqa: BLE001 - thread boundary: a broken stream means reconnect
                log.debug("%s: event stream broke: %r", self._name, exc)
            finally:
                self.stream = None
                with contextlib.suppress(Exception):
                    stream.close()
            if not self._stopping.is_set():
                log.warning("%s: event stream ended (engine restarted?); reconnecting", self._name)

    def _to_loop(self, callback: Callable[..., None], *args: Any) -> None:
        assert self._loop is not None
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is listening any more
            self._loop.call_soon_threadsafe(callback, *args)
