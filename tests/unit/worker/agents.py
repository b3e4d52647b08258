"""A WorkerAgent in the background of a test, against FakeManagers (httpx.MockTransport) and FakeRuntimes,
with its real node.json and worker.db in a temporary data dir; for the worker's end-to-end tests."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from tests.unit.fake_manager import TOKEN, CAFetcher, FakeManager, transport
from tests.unit.worker.fake_runtime import FakeRuntime
from warren.config import WorkerSettings
from warren.worker.daemon import WorkerAgent

M1, M2 = "127.0.0.1:7001", "127.0.0.1:7002"


def make_settings(data_dir: Path, managers: Sequence[str] = (M1,), **extra: Any) -> WorkerSettings:
    """Settings with short timers, so that retries and restarts happen within a test."""
    fields: dict[str, Any] = dict(
        managers=tuple(managers),
        data_dir=str(data_dir),
        runtime="docker",
        advertise_host="127.0.0.1",
        request_timeout_s=0.5,
        session_timeout_s=0.5,
        retry_initial_delay_s=0.01,
        retry_max_delay_s=0.05,
        local_restart_backoff_s=0.01,
        local_restart_backoff_max_s=0.05,
        join_timeout_s=1.0,
        stop_timeout_s=1.0,
    )
    fields.update(extra)
    return WorkerSettings(**fields)


class Worker:
    """A WorkerAgent running in the background of the test."""

    def __init__(
        self,
        settings: WorkerSettings,
        runtimes: list[FakeRuntime],
        managers: dict[str, FakeManager],
        token: str | None,
    ) -> None:
        self.lines: list[str] = []
        self.agent = WorkerAgent(
            settings,
            token=token,
            runtimes=runtimes,
            announce=self.lines.append,
            transport=transport(managers),
            fetch_ca=CAFetcher(managers),
        )
        self.stop = asyncio.Event()
        self.task = asyncio.create_task(self.agent.run(self.stop))

    async def finish(self) -> int:
        self.stop.set()
        async with asyncio.timeout(5):
            return await self.task


@contextlib.asynccontextmanager
async def worker(
    settings: WorkerSettings,
    runtime: FakeRuntime | list[FakeRuntime],
    managers: dict[str, FakeManager],
    token: str | None = TOKEN,
) -> AsyncIterator[Worker]:
    w = Worker(settings, runtime if isinstance(runtime, list) else [runtime], managers, token)
    try:
        yield w
    finally:
        if not w.task.done():
            await w.finish()
