"""Bounded memory and descriptors on a real cluster (docs/security.md): a task printing without
newlines does not grow the leader, and a flood of idle connections from one address leaves the
manager's other clients served and its descriptors under its cap."""

from __future__ import annotations

import contextlib
import os
import resource
import select
import selectors
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.integration import managers as managers_mod
from tests.integration.cluster import read_until_closed
from tests.integration.fakeworker import FakeWorker, create_sleepers, worker_token
from tests.integration.managers import (
    WARREN,
    ManagerCluster,
    api,
    assert_error_body,
    child_env,
    cli,
    credentials,
    get_json,
)
from tests.integration.nodeproc import REPO_ROOT
from tests.integration.workers import Fleet, fleets
from warren.config import LOG_CHUNK_MAX_BYTES, LOG_LINE_MAX_BYTES, ConnectionLimits
from warren.pki.names import MANAGER_NAME
from warren.testing.wait import eventually

MIB = 1024 * 1024


@pytest.fixture
def make_fleet(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Callable[..., Fleet]]:
    with fleets(tmp_path, request) as make:
        yield make


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


class Sampler(threading.Thread):
    """The largest value of `probe()` seen, sampled every 50 ms until stopped."""

    def __init__(self, probe: Callable[[], int]) -> None:
        super().__init__(daemon=True)
        self.probe = probe
        self.peak = probe()
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.05):
            with contextlib.suppress(OSError):
                self.peak = max(self.peak, self.probe())

    def stop(self) -> int:
        self.done.set()
        self.join()
        return self.peak


# -- the log relay --------------------------------------------------------------------------------------

FLOOD_BYTES = 200 * MIB
# Each task prints "ready", waits for the go file, then writes FLOOD_BYTES with no newline, 1 MiB every
# 0.1 s at most: paced so that the process runtime's log rotation (past 10 MiB, checked every 10 s)
# does not truncate much unread output, the end marker included.
FLOOD_PY = (
    "import os, sys, time\n"
    "print('ready', flush=True)\n"
    "while not os.path.exists(sys.argv[1]): time.sleep(0.05)\n"
    "block = b'x' * (1 << 20)\n"
    f"for _ in range({FLOOD_BYTES} >> 20):\n"
    "    sys.stdout.buffer.write(block); sys.stdout.flush(); time.sleep(0.1)\n"
    "print('\\ndone-writing', flush=True)\n"
    "time.sleep(100000)\n"
)


def test_a_task_writing_200_mb_without_newline_does_not_grow_the_leader(
    make_fleet: Callable[..., Fleet], tmp_path: Path
) -> None:
    """Two tasks (so the client reads prefixed lines and the leader keeps partial lines) each write
    200 MB with no newline while `warren service logs -f` follows them: the leader's RSS, sampled from
    /proc every 50 ms, grows by less than 20 MB, and the client gets the output split in lines."""
    fleet = make_fleet()
    fleet.start_managers(1)
    fleet.add_worker("process")
    leader = fleet.managers.managers[0]
    pid = leader.pid
    assert pid is not None
    go = tmp_path / "go"
    command = [sys.executable, "-c", FLOOD_PY, str(go)]
    fleet.create("flood", image="local", driver="process", command=command, replicas=2)
    fleet.wait_running("flood", 2)
    argv = [*WARREN, "service", "logs", "-f", "--raw", "--tail", "all", "flood", "--manager", leader.api_addr]
    follower = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO_ROOT, env=child_env()
    )
    assert follower.stdout is not None
    os.set_blocking(follower.stdout.fileno(), False)
    received = ready = done = dropped = longest = 0
    partial = 0
    tail = b""
    sampler: Sampler | None = None
    base = rss_bytes(pid)
    try:
        last = time.monotonic()
        while done < 2 and time.monotonic() - last < 30:
            select.select([follower.stdout], [], [], 1.0)
            block = follower.stdout.read(MIB)
            if block is None:
                continue
            if not block:
                break
            last = time.monotonic()
            received += len(block)
            text = tail + block  # a word split between two reads is counted once

            def count(word: bytes, text: bytes = text, seen: bytes = tail) -> int:
                return text.count(word) - seen.count(word)

            ready += count(b"| ready\n")
            done += count(b"done-writing")
            dropped += count(b"bytes dropped]")
            tail = text[-32:]
            for line in block.split(b"\n")[:-1] if b"\n" in block else []:
                longest = max(longest, partial + len(line))
                partial = 0
            partial += len(block.rsplit(b"\n", 1)[-1]) if b"\n" in block else len(block)
            longest = max(longest, partial)
            if ready == 2 and sampler is None:  # both tasks are followed: start the flood
                base = rss_bytes(pid)
                sampler = Sampler(lambda: rss_bytes(pid))
                sampler.start()
                go.touch()
    finally:
        follower.kill()
        _, err = follower.communicate()
        peak = sampler.stop() if sampler is not None else base
    growth = peak - base
    print(f"\nleader RSS {base / MIB:.1f} MiB -> peak {peak / MIB:.1f} MiB (+{growth / MIB:.1f} MiB); "
          f"client read {received / MIB:.1f} MiB, {dropped} drop markers, longest line {longest} bytes")
    assert ready == 2, f"the client never saw both tasks start: {err.decode()[-2000:]}"
    assert done == 2, f"the output of both tasks did not reach the end: {err.decode()[-2000:]}"
    assert received > FLOOD_BYTES, f"only {received} bytes of output reached the client"
    assert longest <= LOG_LINE_MAX_BYTES + len(b"flood.N | "), "an over-long line must be split"
    assert growth < 20 * MIB, f"the leader grew by {growth / MIB:.1f} MiB while relaying"


def test_a_log_chunk_over_the_limit_is_refused_with_413(
    make_managers: Callable[..., ManagerCluster],
) -> None:
    m = make_managers().init()
    addr = m.api_addr
    w = FakeWorker.join([addr], worker_token(addr)).keep_alive()
    try:
        create_sleepers(addr, "web", replicas=1)
        eventually(lambda: len(w.task_ids()) == 1, 10, "a task assigned")
        (task_id,) = w.task_ids()
        assert w.status(task_id, "running", container_id="c0").status_code == 200
        got: list[httpx.Response] = []

        def client() -> None:
            with api(addr, 30) as c:
                got.append(c.get("/v1/services/web/logs?follow=true"))

        reader = threading.Thread(target=client)
        reader.start()
        req = eventually(lambda: w.log_requests and w.log_requests[0], 10, "the log request")
        headers = {**w.headers, "content-type": "application/octet-stream"}
        with api(addr, 10) as c:
            path = f"/v1/dispatcher/logs/{req['id']}"
            body = assert_error_body(c.post(path, content=b"x" * (LOG_CHUNK_MAX_BYTES + 1), headers=headers),
                                     413, "too_large")
            assert str(LOG_CHUNK_MAX_BYTES) in body["message"]
            assert c.post(path, content=b"y" * LOG_CHUNK_MAX_BYTES, headers=headers).status_code == 200
            r = c.post(path, content=b"\n", headers={**headers, "X-Warren-Log-End": "1"})
            assert r.status_code == 200, r.text
        reader.join(30)
        assert got and got[0].status_code == 200
        assert got[0].content == b"y" * LOG_CHUNK_MAX_BYTES + b"\n", "the refused chunk must not be relayed"
    finally:
        w.stop()


# -- connection exhaustion -------------------------------------------------------------------------------

NOFILE = 1024  # the manager's descriptor limit in this test (the flood holds more connections than that)
FLOOD_HOST = "127.0.0.250"  # the flood's source address; every other client comes from 127.0.0.1


class Flood(threading.Thread):
    """Holds up to `count` idle TCP connections from FLOOD_HOST to `addr` (sending nothing), opening a
    new one for each the server closes, until stopped."""

    def __init__(self, addr: str, count: int) -> None:
        super().__init__(daemon=True)
        host, port = addr.rsplit(":", 1)
        self.target = (host, int(port))
        self.count = count
        self.done = threading.Event()
        self.opened = 0
        self.held = 0
        self.error: BaseException | None = None

    def _open(self, sel: selectors.BaseSelector) -> None:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind((FLOOD_HOST, 0))
        s.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            s.connect(self.target)
        sel.register(s, selectors.EVENT_READ)
        self.opened += 1

    def run(self) -> None:
        sel = selectors.DefaultSelector()
        try:
            while not self.done.is_set():
                while len(sel.get_map()) < self.count and not self.done.is_set():
                    self._open(sel)
                self.held = len(sel.get_map())
                for key, _ in sel.select(0.05):  # readable: closed by the server (or refused)
                    s = key.fileobj
                    assert isinstance(s, socket.socket)
                    sel.unregister(s)
                    s.close()
        except BaseException as exc:  # reported by the test
            self.error = exc
        finally:
            for key in list(sel.get_map().values()):
                with contextlib.suppress(OSError):
                    key.fileobj.close()  # type: ignore[union-attr]
            sel.close()

    def stop(self) -> None:
        self.done.set()
        self.join(30)


@pytest.fixture
def more_descriptors() -> Iterator[None]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, 8192)
    if want < 3 * NOFILE:
        pytest.skip(f"the test process needs {3 * NOFILE} descriptors (hard limit {hard})")
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_a_flood_of_idle_connections_leaves_the_others_served(
    make_fleet: Callable[..., Fleet], more_descriptors: None
) -> None:
    """One address holds more connections than the manager's descriptor limit (RLIMIT_NOFILE lowered
    to NOFILE with prlimit): the CLI, the API, the metrics port, a worker's session and the other
    managers (forwarded writes, Raft) keep working, and the descriptors stay under the cap."""
    limited = ["prlimit", f"--nofile={NOFILE}:{NOFILE}", "--"]
    hosts = ((f"127.0.0.{n}", None, limited) for n in managers_mod._HOSTS)
    fleet = make_fleet(hosts=hosts)
    fleet.start_managers(3)
    leader = fleet.managers.leader()
    followers = fleet.managers.followers(leader)
    worker = fleet.add_worker("process")
    pid = leader.pid
    assert pid is not None
    with open(f"/proc/{pid}/limits") as f:
        assert any(line.startswith("Max open files") and f" {NOFILE} " in line for line in f)
    limits = ConnectionLimits()
    cap = limits.total_cap(NOFILE)
    per_peer = limits.per_peer_cap(cap)
    base = fd_count(pid)
    flood = Flood(leader.api_addr, NOFILE + NOFILE // 2)
    sampler = Sampler(lambda: fd_count(pid))
    sampler.start()
    flood.start()
    try:
        eventually(lambda: flood.opened > 2 * NOFILE, 60, "the flood to open its connections")
        eventually(lambda: fd_count(pid) >= base + per_peer // 2, 30, "the flood to hold connections")
        # An authenticated client: the CLI and the API helper.
        cli("service", "list", "--manager", leader.api_addr).ok()
        assert get_json(leader.api_addr, "/v1/cluster")["leader"]["name"] == leader.name
        # The metrics port (its own server in the same process).
        assert leader.metrics()["warren_raft_leader"] == 1
        # The other managers: a write through a follower is forwarded to the leader and replicated.
        with api(followers[0].api_addr, 15) as client:
            r = client.post("/v1/services", json={"name": "during", "image": "local", "driver": "process",
                                                  "command": ["sleep", "100000"], "replicas": 1})
        assert r.status_code == 201, r.text
        fleet.managers.wait_same_services(fleet.managers.managers, leader)
        # A worker's session: the new service's task is assigned to it, started and reported running.
        tasks = fleet.wait_running("during", 1)
        assert tasks[0]["node"] == worker.name
        assert get_json(leader.api_addr, f"/v1/nodes/{worker.name}")["state"] == "ready"
        assert fleet.managers.leader() is leader, "the flood must not cost the leader its leadership"
        assert flood.error is None, flood.error
        assert flood.held > NOFILE, f"the flood held only {flood.held} connections"
    finally:
        flood.stop()
        peak = sampler.stop()
    print(f"\nleader descriptors: {base} before the flood, peak {peak} (API cap {cap}, {per_peer} per "
          f"address, limit {NOFILE}); "
          f"the flood opened {flood.opened} connections")
    assert peak <= base + cap + 160, f"{peak} descriptors open on the leader (base {base}, cap {cap})"
    eventually(lambda: fd_count(pid) <= base + 32, 30, "the leader's descriptors to go back down")


def test_a_silent_connection_is_closed_within_the_handshake_deadline_or_idle_timeout(
    make_managers: Callable[..., ManagerCluster],
) -> None:
    """A connection that never starts TLS is closed after tls_handshake_timeout_s (asyncio's default
    was 60 s); one that completes the handshake but sends no request, after idle_timeout_s."""
    m = make_managers().init()
    limits = ConnectionLimits()
    host, port = m.api_addr.rsplit(":", 1)
    start = time.monotonic()
    with socket.create_connection((host, int(port)), timeout=5) as raw:
        assert read_until_closed(raw, timeout=limits.tls_handshake_timeout_s + 5) == b""
    assert time.monotonic() - start >= limits.tls_handshake_timeout_s - 0.5
    context = credentials(m.api_addr).context()
    with socket.create_connection((host, int(port)), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname=MANAGER_NAME) as tls:
            start = time.monotonic()
            assert read_until_closed(tls, timeout=limits.idle_timeout_s + 5) == b""
    assert time.monotonic() - start >= limits.idle_timeout_s - 0.5
