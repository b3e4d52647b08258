"""Warren managers for the API benchmarks, started through the CLI exactly as an operator would.

`ManagerCluster` founds a cluster with `warren cluster init`, issues a manager join token over the API
and adds the others with `warren manager join`, one at a time, each on its own loopback address. Every
manager runs in its own process group, so `kill()` is a SIGKILL of the whole group and nothing
outlives the benchmark: `close()` (and the context manager) kills whatever is still running, and
`sigterm_raises()` turns a SIGTERM of the benchmark run into an exception so those `finally` blocks run.

`Http` is the client side shared with the etcd peer: one persistent HTTP/1.1 keep-alive connection.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.integration.nodeproc import REPO_ROOT, free_port

# Budgets of the harness itself (not measurements); seconds.
FORM_TIMEOUT_S = 60.0  # a manager to become a ready member after its process starts
STABLE_TIMEOUT_S = 30.0  # every live manager to agree on one ready leader
CONTROL_TIMEOUT_S = 2.0  # one control-plane request (readiness polls, join tokens)
POLL_S = 0.02  # pause between readiness polls


class HarnessError(Exception):
    """A cluster could not be formed, recovered or queried within its budget."""


class HttpError(Exception):
    """A request got no HTTP answer (connection refused or reset, timeout); the connection is closed."""


@contextlib.contextmanager
def sigterm_raises() -> Iterator[None]:
    """While inside, a SIGTERM of this process raises KeyboardInterrupt (so cleanup in `finally` runs)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGTERM)
    if previous not in (signal.SIG_DFL, None):
        yield  # someone else already handles it
        return

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class Http:
    """One persistent HTTP/1.1 connection to `addr` ("host:port"), as a client library would keep.

    http.client sets TCP_NODELAY and sends a small body in the same segment as the headers. Any failure
    closes the connection and raises HttpError; the next request opens a new one.
    """

    def __init__(self, addr: str, timeout_s: float) -> None:
        self.addr = addr
        host, port = addr.rsplit(":", 1)
        self._conn = http.client.HTTPConnection(host, int(port), timeout=timeout_s)

    def request(
        self, method: str, path: str, body: bytes | None = None, timeout_s: float | None = None
    ) -> tuple[int, bytes]:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        try:
            if timeout_s is not None:
                self._conn.timeout = timeout_s
                if self._conn.sock is not None:
                    self._conn.sock.settimeout(timeout_s)
            self._conn.request(method, path, body=body, headers=headers)
            resp = self._conn.getresponse()
            data = resp.read()
        except (OSError, http.client.HTTPException) as exc:
            self._conn.close()
            raise HttpError(f"{method} {self.addr}{path}: {type(exc).__name__}: {exc}") from None
        if resp.will_close:
            self._conn.close()
        return resp.status, data

    def json(
        self, method: str, path: str, doc: Any = None, timeout_s: float | None = None
    ) -> tuple[int, Any]:
        status, data = self.request(
            method, path, None if doc is None else json.dumps(doc).encode(), timeout_s
        )
        try:
            return status, json.loads(data) if data else None
        except ValueError:
            return status, None

    def reconnect(self) -> None:
        """Drop the connection (the next request opens a fresh one: no idle-timeout surprise)."""
        self._conn.close()

    def close(self) -> None:
        self._conn.close()


def call(
    addr: str, method: str, path: str, doc: Any = None, timeout_s: float = CONTROL_TIMEOUT_S
) -> tuple[int, Any]:
    """One control-plane request on a fresh connection; raises HttpError when there is no answer."""
    conn = Http(addr, timeout_s)
    try:
        return conn.json(method, path, doc)
    finally:
        conn.close()


class Proc:
    """A daemon in its own process group, stdout and stderr appended to a log file."""

    def __init__(self, name: str, argv: list[str], log_path: Path, env: dict[str, str] | None = None) -> None:
        self.name = name
        self.argv = argv
        self.log_path = log_path
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> None:
        if self.alive:
            raise HarnessError(f"{self.name} is already running")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            log.write(f"==== {time.strftime('%H:%M:%S')} start {self.name}: {' '.join(self.argv)}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=REPO_ROOT,
                env=self.env,
                start_new_session=True,  # its own process group: killpg reaches it and its children only
            )

    def kill(self) -> None:
        """SIGKILL of the process group (kill -9); returns once the process is reaped."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)

    def exit_note(self) -> str:
        """Why it is not running (exit code and the log's last lines), for error messages."""
        code = self.proc.poll() if self.proc else None
        try:
            tail = self.log_path.read_text(errors="replace").strip().splitlines()[-3:]
        except OSError:
            tail = []
        return f"{self.name} exited with {code}: " + " / ".join(tail)


class ManagerProc(Proc):
    def __init__(self, index: int, host: str, base_dir: Path, raft_flags: list[str]) -> None:
        self.index = index
        self.api_addr = f"{host}:{free_port(host)}"
        self.raft_addr = f"{host}:{free_port(host)}"
        self.metrics_addr = f"{host}:{free_port(host)}"
        self.data_dir = base_dir / f"manager{index}"
        self.raft_flags = raft_flags
        super().__init__(f"manager{index}@{self.api_addr}", [], base_dir / f"manager{index}.log")

    def flags(self) -> list[str]:
        return [
            "--listen-addr", self.api_addr,
            "--raft-addr", self.raft_addr,
            "--metrics-addr", self.metrics_addr,
            "--data-dir", str(self.data_dir),
            "--manager-only",  # the control-plane benchmarks measure managers alone
            *self.raft_flags,
        ]  # fmt: skip

    def init(self) -> None:
        self.argv = [sys.executable, "-m", "warren.cli.main", "cluster", "init", *self.flags()]
        self.start()

    def join(self, token: str, via: str) -> None:
        self.argv = [
            sys.executable, "-m", "warren.cli.main", "manager", "join",
            "--token", token, "--manager", via, *self.flags(),
        ]  # fmt: skip
        self.start()

    def ready(self) -> bool:
        try:
            status, _ = call(self.api_addr, "GET", "/v1/ready")
        except HttpError:
            return False
        return status == 200

    def cluster(self) -> dict[str, Any] | None:
        try:
            status, doc = call(self.api_addr, "GET", "/v1/cluster")
        except HttpError:
            return None
        return doc if status == 200 and isinstance(doc, dict) else None


class ManagerCluster:
    """Up to five managers on 127.0.0.<first_host + i>; `start(n)` forms the cluster through the CLI.

    `raft_flags` are passed to every manager (e.g. ["--raft-election-timeout", "500ms"]); none = the
    defaults of warren/config.py.
    """

    def __init__(self, base_dir: Path, raft_flags: list[str] | None = None, first_host: int = 50) -> None:
        self.base_dir = base_dir
        self.raft_flags = list(raft_flags or [])
        self.first_host = first_host
        self.managers: list[ManagerProc] = []

    def __enter__(self) -> ManagerCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for m in self.managers:
            m.kill()

    def live(self) -> list[ManagerProc]:
        return [m for m in self.managers if m.alive]

    def start(self, n: int) -> ManagerProc:
        """Found the cluster on manager 1, join the others one by one; returns the leader."""
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self.managers = [
            ManagerProc(i, f"127.0.0.{self.first_host + i}", self.base_dir, self.raft_flags)
            for i in range(1, n + 1)
        ]
        first = self.managers[0]
        first.init()
        self.wait_member(first)
        status, doc = call(first.api_addr, "POST", "/v1/cluster/join-tokens", {"role": "manager"})
        if status != 201:
            raise HarnessError(f"join token: HTTP {status}: {doc}")
        token = doc["token"]
        for m in self.managers[1:]:
            m.join(token, first.api_addr)
            self.wait_member(m)
        return self.wait_stable()

    def wait_member(self, m: ManagerProc, timeout_s: float = FORM_TIMEOUT_S) -> None:
        """Until `m` answers /v1/ready with 200 and the leader lists it as a ready leader or follower."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not m.alive:
                raise HarnessError(m.exit_note())
            if m.ready():
                leader = self._leader_view(m)
                if leader is not None:
                    row = next((r for r in leader["managers"] if r["api_addr"] == m.api_addr), None)
                    if row is not None and row["status"] == "ready" and row["role"] in ("leader", "follower"):
                        return
            time.sleep(POLL_S)
        raise HarnessError(f"{m.name} did not become a ready member within {timeout_s:g} s")

    def _leader_view(self, m: ManagerProc) -> dict[str, Any] | None:
        """/v1/cluster as the leader known to `m` answers it (None while there is none)."""
        doc = m.cluster()
        if doc is None or not doc.get("leader"):
            return None
        addr = doc["leader"]["api_addr"]
        if addr == m.api_addr:
            return doc
        leader = next((x for x in self.managers if x.api_addr == addr), None)
        return leader.cluster() if leader is not None else None

    def wait_stable(self, timeout_s: float = STABLE_TIMEOUT_S) -> ManagerProc:
        """The leader, once every live manager is ready and names it, and it names itself."""
        deadline = time.monotonic() + timeout_s
        seen: dict[str, Any] = {}
        while time.monotonic() < deadline:
            live = self.live()
            seen = {}
            for m in live:
                doc = m.cluster() if m.ready() else None
                seen[m.name] = doc["leader"]["api_addr"] if doc and doc.get("leader") else None
            addrs = set(seen.values())
            if len(addrs) == 1 and None not in addrs:
                addr = addrs.pop()
                leader = next((m for m in live if m.api_addr == addr), None)
                if leader is not None:
                    return leader
            time.sleep(POLL_S)
        raise HarnessError(f"no stable leader within {timeout_s:g} s (leader seen by each: {seen})")

    def recover(self, m: ManagerProc) -> None:
        """Restart a killed manager with its own command (it resumes from its data dir); wait until it is
        a ready follower and every manager agrees on the leader."""
        m.start()
        self.wait_member(m)
        self.wait_stable()
