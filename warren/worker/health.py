"""Health checks of running tasks: a command inside the task, an HTTP GET, or a TCP connect.

A task with a health check starts `starting`; one successful probe makes it `healthy`; `retries`
consecutive failed probes make it `unhealthy` (failures during `start_period_s` after the start do
not count, a success then still counts). Only changes are reported; an unhealthy task is stopped by
the agent and reported failed with the last probe's reason.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from warren.errors import NotFoundError
from warren.formats import join_host_port
from warren.runtime.base import ContainerRuntime, RuntimeUnavailableError
from warren.spec.service import HealthCheck

log = logging.getLogger(__name__)

STARTING = "starting"
HEALTHY = "healthy"
UNHEALTHY = "unhealthy"

# (task ID, container ID, health, reason of the last failed probe or "")
OnChange = Callable[[str, str, str, str], None]


async def probe(spec: HealthCheck, runtime: ContainerRuntime, container_id: str) -> str | None:
    """One probe: None if healthy, else why not (in a user's words)."""
    try:
        if spec.kind == "cmd":
            status = await runtime.exec(container_id, list(spec.cmd or ()), spec.timeout_s)
            if status == 0:
                return None
            if status == -1:
                return f"command timed out after {spec.timeout_s:g} s"
            return f"command exited with status {status}"
        address = await runtime.address(container_id)
        assert spec.port is not None
        if spec.kind == "tcp":
            return await _tcp(address, spec.port, spec.timeout_s)
        return await _http(address, spec.port, spec.path, spec.timeout_s)
    except RuntimeUnavailableError as exc:
        return f"runtime unavailable: {exc}"
    except NotFoundError:
        return "the task's container is gone"


async def _tcp(host: str, port: int, timeout_s: float) -> str | None:
    where = f"{host}:{port}"
    try:
        async with asyncio.timeout(timeout_s):
            _, writer = await asyncio.open_connection(host, port)
    except TimeoutError:
        return f"connection to {where} timed out after {timeout_s:g} s"
    except OSError as exc:
        return f"connection to {where} failed: {exc.strerror or exc}"
    writer.close()
    return None


async def _http(host: str, port: int, path: str, timeout_s: float) -> str | None:
    url = f"http://{join_host_port(host, port)}{path}"
    try:
        async with asyncio.timeout(timeout_s):
            reader, writer = await asyncio.open_connection(host, port)
            try:
                request = (
                    f"GET {path} HTTP/1.1\r\nHost: {join_host_port(host, port)}\r\n"
                    "User-Agent: warren-health\r\nConnection: close\r\n\r\n"
                )
                writer.write(request.encode())
                await writer.drain()
                status_line = await reader.readline()
            finally:
                writer.close()
    except TimeoutError:
        return f"GET {url} timed out after {timeout_s:g} s"
    except OSError as exc:
        return f"GET {url} failed: {exc.strerror or exc}"
    parts = status_line.split()
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
        return f"GET {url} got no HTTP answer"
    status = int(parts[1])
    if 200 <= status < 400:
        return None
    return f"GET {url} answered {status}"


class HealthMonitor:
    """Probes one running container every `interval_s` until stopped or unhealthy."""

    def __init__(
        self,
        task_id: str,
        container_id: str,
        spec: HealthCheck,
        runtime: ContainerRuntime,
        on_change: OnChange,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.task_id = task_id
        self.container_id = container_id
        self.spec = spec
        self.runtime = runtime
        self.on_change = on_change
        self.clock = clock
        self.health = STARTING
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"health-{self.task_id}")

    async def stop(self) -> None:
        if self._task is not None and self._task is not asyncio.current_task():
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        self._task = None

    async def _run(self) -> None:
        started = self.clock()
        failures = 0
        self.on_change(self.task_id, self.container_id, STARTING, "")
        while True:
            await asyncio.sleep(self.spec.interval_s)
            try:
                reason = await probe(self.spec, self.runtime, self.container_id)
            except Exception as exc:  # a probe's own bug must not end the checks silently
                log.exception("health probe of task %s failed", self.task_id)
                reason = f"probe error: {exc}"
            if reason is None:
                failures = 0
                self._set(HEALTHY, "")
                continue
            if self.clock() - started < self.spec.start_period_s:
                log.debug("task %s: probe failed during its start period: %s", self.task_id, reason)
                continue
            failures += 1
            log.info("task %s: health check failed (%d of %d): %s", self.task_id, failures, self.spec.retries,
                     reason)
            if failures >= self.spec.retries:
                self._set(UNHEALTHY, reason)
                return

    def _set(self, health: str, reason: str) -> None:
        if health != self.health:
            self.health = health
            self.on_change(self.task_id, self.container_id, health, reason)
