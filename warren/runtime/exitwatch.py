"""The Docker runtime's exits, each container's reported once.

Exits come from the engine's event stream (`die` events, read by an EventFeed in a thread); when the
stream breaks (engine restart) the feed reconnects, and containers believed running that stopped
meanwhile are reported from a fresh listing: the engine keeps no events across a restart. Before an
exit is handed on, the container is inspected for why it stopped (out of memory, engine error).

Nothing here imports the Docker SDK (only docker.py does): docker.py hands in its calls and the
SDK's error types.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

from warren.runtime.base import LABEL_TASK, Exit, ExitQueue, Instance
from warren.runtime.events import EventFeed, Stream

log = logging.getLogger(__name__)

# Exits already reported, by container ID (a container dies once: the worker never restarts one, it
# starts a new container). Bounded so a long-lived worker does not grow it forever.
_REPORTED_MAX = 10_000


class ExitWatch:
    """Follows `open_stream(since)` (the engine's `die` events of this worker's containers) once
    started. `inspect(container_id)` and `list_instances()` are the runtime's calls; `errors` are what
    they raise when the engine cannot answer or has no such container (the exit is then reported as
    the event says, and a resync waits for the next connection)."""

    def __init__(
        self,
        open_stream: Callable[[int | None], Stream],
        *,
        inspect: Callable[[str], Awaitable[dict[str, Any]]],
        list_instances: Callable[[], Awaitable[Sequence[Instance]]],
        errors: tuple[type[BaseException], ...],
        unreachable: tuple[type[BaseException], ...],
        retry_initial_s: float,
        retry_max_s: float,
        name: str,
    ) -> None:
        self._inspect = inspect
        self._list = list_instances
        self._errors = errors
        self._exits = ExitQueue()
        self.events = EventFeed(
            open_stream,
            on_event=self._on_die,
            # Whatever died before a stream opened (start-up, or an engine restart) is found by
            # listing: its `die` event is gone (the engine keeps no history across a restart).
            on_connect=self._resync,
            unreachable=unreachable,
            retry_initial_s=retry_initial_s,
            retry_max_s=retry_max_s,
            name=name,
        )
        self._reported: OrderedDict[str, None] = OrderedDict()
        self._running: dict[str, str] = {}  # container ID -> task ID, believed running
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    def start(self) -> None:
        """Open the event stream on first use (the runtime may be constructed outside a loop)."""
        if not self.events.started:
            self.events.start(asyncio.get_running_loop())

    def stream(self) -> AsyncIterator[Exit]:
        return self._exits.stream()

    def running(self, container_id: str, task_id: str) -> None:
        """The container was started, or seen running: its exit is to be reported."""
        self._running[container_id] = task_id

    def removed(self, container_id: str) -> None:
        self._running.pop(container_id, None)
        self._reported.pop(container_id, None)

    async def close(self) -> None:
        self._closed = True
        for task in list(self._tasks):
            task.cancel()
        self._exits.close()
        await self.events.close()

    def _on_die(self, event: dict[str, Any]) -> None:
        container_id = event.get("id") or event.get("Actor", {}).get("ID", "")
        attributes = event.get("Actor", {}).get("Attributes", {})
        code = attributes.get("exitCode")
        exit_code = int(code) if code is not None and str(code).lstrip("-").isdigit() else None
        self._report(container_id, attributes.get(LABEL_TASK, ""), exit_code)

    def _report(self, container_id: str, task_id: str, exit_code: int | None, message: str = "") -> None:
        if self._closed or container_id in self._reported:
            return
        self._reported[container_id] = None
        while len(self._reported) > _REPORTED_MAX:
            self._reported.popitem(last=False)
        self._running.pop(container_id, None)
        self._spawn(self._deliver(Exit(task_id, container_id, exit_code, message)))

    async def _deliver(self, exit: Exit) -> None:
        """Add why the container stopped (out of memory, engine error) when the engine knows."""
        message = exit.message
        try:
            attrs = await self._inspect(exit.container_id)
            state = attrs.get("State", {})
            if state.get("OOMKilled"):
                message = "killed: out of memory"
            elif state.get("Error"):
                message = str(state["Error"])
        except self._errors:
            pass  # already removed: the exit code is all there is
        if not self._closed:
            self._exits.put(Exit(exit.task_id, exit.container_id, exit.exit_code, message))

    def _resync(self) -> None:
        self._spawn(self._resync_async())

    async def _resync_async(self) -> None:
        """Once a stream is open: containers believed running (started, or seen running by a listing)
        that are not any more died while no stream was open."""
        believed = dict(self._running)
        try:
            now = {i.container_id: i for i in await self._list()}
        except self._errors as exc:
            log.warning("docker: cannot list containers after reconnecting: %s", exc)
            return
        for container_id, task_id in believed.items():
            instance = now.get(container_id)
            if instance is None or not instance.running:
                code = instance.exit_code if instance is not None else None
                self._report(container_id, task_id, code, "stopped while no engine event stream was open")

    def _spawn(self, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
