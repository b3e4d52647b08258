"""Health checks: the three probes against real loopback sockets, the monitor's counting, and what the
agent does with an unhealthy task."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.unit.fake_manager import FakeManager, task_doc
from tests.unit.worker.agents import M1, make_settings, worker
from tests.unit.worker.fake_runtime import FakeRuntime
from warren.spec.service import HealthCheck
from warren.testing.wait import eventually_async
from warren.worker.health import HEALTHY, STARTING, UNHEALTHY, HealthMonitor, probe


@pytest.fixture
async def http_server() -> AsyncIterator[tuple[int, dict[str, bytes]]]:
    """A loopback HTTP server answering each path with the status line in `answers`."""
    answers: dict[str, bytes] = {"/ok": b"200 OK", "/moved": b"302 Found", "/broken": b"500 Oops"}

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await reader.readline()
            await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:  # a TCP probe: connected and left
            writer.close()
            return
        path = line.split()[1].decode()
        if path == "/slow":
            await asyncio.sleep(5)  # a server slower than the probe's timeout: the behaviour under test
        writer.write(b"HTTP/1.1 " + answers.get(path, b"404 Not Found") + b"\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield port, answers


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_http_probe_2xx_3xx_healthy_else_the_reason(http_server: tuple[int, dict[str, bytes]]) -> None:
    port, _ = http_server
    rt = FakeRuntime()

    def spec(path: str, timeout_s: float = 1.0) -> HealthCheck:
        return HealthCheck(kind="http", port=port, path=path, timeout_s=timeout_s)

    assert await probe(spec("/ok"), rt, "c1") is None
    assert await probe(spec("/moved"), rt, "c1") is None
    assert await probe(spec("/broken"), rt, "c1") == f"GET http://127.0.0.1:{port}/broken answered 500"
    assert (
        await probe(spec("/slow", 0.1), rt, "c1") == f"GET http://127.0.0.1:{port}/slow timed out after 0.1 s"
    )
    reason = await probe(HealthCheck(kind="http", port=closed_port()), rt, "c1")
    assert reason is not None and "failed" in reason


async def test_tcp_probe(http_server: tuple[int, dict[str, bytes]]) -> None:
    port, _ = http_server
    rt = FakeRuntime()
    assert await probe(HealthCheck(kind="tcp", port=port), rt, "c1") is None
    dead = closed_port()
    reason = await probe(HealthCheck(kind="tcp", port=dead), rt, "c1")
    assert reason is not None and reason.startswith(f"connection to 127.0.0.1:{dead} failed")


async def test_cmd_probe_uses_exec_in_the_container() -> None:
    rt = FakeRuntime()
    statuses = {"c1": 0, "c2": 3, "c3": -1}
    rt.exec_status = lambda cid, cmd: statuses[cid]
    spec = HealthCheck(kind="cmd", cmd=["test", "-f", "/ready"], timeout_s=0.5)
    assert await probe(spec, rt, "c1") is None
    assert await probe(spec, rt, "c2") == "command exited with status 3"
    assert await probe(spec, rt, "c3") == "command timed out after 0.5 s"
    assert rt.execs[0] == ("c1", ["test", "-f", "/ready"])


class Changes:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    def __call__(self, task_id: str, container_id: str, health: str, reason: str) -> None:
        self.seen.append((health, reason))


async def test_monitor_starting_then_healthy_and_only_changes_reported() -> None:
    rt = FakeRuntime()
    changes = Changes()
    monitor = HealthMonitor("t1", "c1", HealthCheck(kind="cmd", cmd=["true"], interval_s=0.01), rt, changes)
    monitor.start()
    try:
        await eventually_async(lambda: len(rt.execs) >= 5, 5.0, "several probes")
    finally:
        await monitor.stop()
    assert changes.seen == [(STARTING, ""), (HEALTHY, "")]


async def test_monitor_unhealthy_after_retries_consecutive_failures() -> None:
    rt = FakeRuntime()
    results = iter([1, 0, 1, 1, 1, 1])  # one failure, a success resets the count, then three failures
    rt.exec_status = lambda cid, cmd: next(results)
    changes = Changes()
    spec = HealthCheck(kind="cmd", cmd=["check"], interval_s=0.01, retries=3)
    monitor = HealthMonitor("t1", "c1", spec, rt, changes)
    monitor.start()
    try:
        await eventually_async(
            lambda: bool(changes.seen) and changes.seen[-1][0] == UNHEALTHY, 5.0, "unhealthy"
        )
    finally:
        await monitor.stop()
    assert len(rt.execs) == 5
    assert changes.seen == [(STARTING, ""), (HEALTHY, ""), (UNHEALTHY, "command exited with status 1")]


async def test_monitor_ignores_failures_during_the_start_period() -> None:
    rt = FakeRuntime()
    rt.exec_status = lambda cid, cmd: 1
    changes = Changes()
    spec = HealthCheck(kind="cmd", cmd=["check"], interval_s=0.01, retries=1, start_period_s=0.3)
    started = time.monotonic()
    monitor = HealthMonitor("t1", "c1", spec, rt, changes)
    monitor.start()
    try:
        await eventually_async(
            lambda: bool(changes.seen) and changes.seen[-1][0] == UNHEALTHY, 5.0, "unhealthy"
        )
    finally:
        await monitor.stop()
    assert time.monotonic() - started >= 0.3
    assert len(rt.execs) > 5  # probed all along, the failures just did not count


async def test_agent_reports_health_and_fails_an_unhealthy_task(tmp_path: Path) -> None:
    m = FakeManager()
    rt = FakeRuntime()
    sick: set[str] = set()
    rt.exec_status = lambda cid, cmd: 1 if cid in sick else 0
    check = {"kind": "cmd", "cmd": ["check"], "interval_s": 0.01, "timeout_s": 1.0, "retries": 2}
    async with worker(make_settings(tmp_path / "w"), rt, {M1: m}):
        m.assign(task_doc("t1", health=check))
        await eventually_async(lambda: (m.update("t1") or {}).get("health") == "healthy", 5.0, "t1 healthy")
        assert m.state("t1") == "running"
        [c] = rt.running("t1")
        sick.add(c.container_id)
        await eventually_async(lambda: m.state("t1") == "failed", 5.0, "t1 failed")
        await eventually_async(lambda: c.container_id in rt.removed, 5.0, "its container removed")
    last = m.update("t1")
    assert last is not None
    assert last["message"] == "health check failed: command exited with status 1"
    assert last["health"] == "unhealthy"
    assert rt.stops == [c.container_id]
    assert rt.starts_of("t1") == 1


async def test_an_unhealthy_verdict_is_reported_before_the_container_has_stopped(tmp_path: Path) -> None:
    # The leader takes an unhealthy task out of its service's endpoints (names, ingress) on this report:
    # it must not wait for the stop, which can take the task's whole stop timeout.
    m = FakeManager()
    rt = FakeRuntime()
    sick: set[str] = set()
    rt.exec_status = lambda cid, cmd: 1 if cid in sick else 0
    release = asyncio.Event()
    plain_stop = rt.stop

    async def slow_stop(container_id: str, timeout_s: float) -> None:
        await release.wait()
        await plain_stop(container_id, timeout_s)

    rt.stop = slow_stop  # type: ignore[method-assign]
    check = {"kind": "cmd", "cmd": ["check"], "interval_s": 0.01, "timeout_s": 1.0, "retries": 1}
    async with worker(make_settings(tmp_path / "w"), rt, {M1: m}):
        m.assign(task_doc("t1", health=check))
        await eventually_async(lambda: (m.update("t1") or {}).get("health") == "healthy", 5.0, "t1 healthy")
        [c] = rt.running("t1")
        sick.add(c.container_id)
        await eventually_async(lambda: (m.update("t1") or {}).get("health") == "unhealthy", 5.0,
                               "the unhealthy verdict reported")
        assert m.state("t1") == "running"  # its container is still being stopped
        assert c.running
        release.set()
        await eventually_async(lambda: m.state("t1") == "failed", 5.0, "t1 failed once stopped")
