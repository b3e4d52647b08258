"""Warren managers for the API benchmarks, started through the CLI exactly as an operator would.

`ManagerCluster` founds a cluster with `warren cluster init`, issues a manager join token over the API
and adds the others with `warren manager join`, one at a time, each on its own loopback address. Every
manager runs in its own process group, so `kill()` is a SIGKILL of the whole group and nothing
outlives the benchmark: `close()` (and the context manager) kills whatever is still running, and
`sigterm_raises()` turns a SIGTERM of the benchmark run into an exception so those `finally` blocks run.

Besides SIGKILL, a `Proc` can be frozen (`freeze()`: SIGSTOP of its group, sockets stay open), thawed
(`thaw()`) and asked to stop (`terminate()`: SIGTERM, as an operator or init system would). A manager
can run inside a network namespace (benches/partition.py): its command is then prefixed with `ip netns
exec NAME` (which execs, so the process group is still the manager's) and it listens on fixed ports.

`Http` is the client side shared with the etcd peer: one persistent HTTP/1.1 keep-alive connection,
over TLS for Warren. Every manager API port is HTTPS with mutual TLS: a cluster's managers write its
admin certificate into the cluster's own config dir (`WARREN_CONFIG_DIR` in their environment, inside
the cluster's base dir, removed with it; never the user's ~/.config), and `AdminTls` reads it from there
once `cluster init` has written it. Every manager of the cluster is called with that certificate.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from benches.harness import CONFIG_DIR_ENV
from tests.integration.nodeproc import REPO_ROOT, free_port
from warren.testing.managers import admin_credentials

# Budgets of the harness itself (not measurements); seconds.
FORM_TIMEOUT_S = 60.0  # a manager to become a ready member after its process starts
STABLE_TIMEOUT_S = 30.0  # every live manager to agree on one ready leader
CONTROL_TIMEOUT_S = 2.0  # one control-plane request (readiness polls, join tokens)
POLL_S = 0.02  # pause between readiness polls
SIGNAL_EFFECT_TIMEOUT_S = 5.0  # a SIGSTOP to show in /proc (the process state "T"); seconds


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

    With `tls`, HTTPS: the TLS handshake happens when the connection opens (the first request, or
    `connect()`), and the requests after it reuse the session's connection, as a keep-alive client would.

    http.client sets TCP_NODELAY and sends a small body in the same segment as the headers. Any failure
    closes the connection and raises HttpError; the next request opens a new one.
    """

    def __init__(self, addr: str, timeout_s: float, tls: ssl.SSLContext | None = None) -> None:
        self.addr = addr
        host, port = addr.rsplit(":", 1)
        self._conn: http.client.HTTPConnection
        if tls is None:
            self._conn = http.client.HTTPConnection(host, int(port), timeout=timeout_s)
        else:
            self._conn = http.client.HTTPSConnection(host, int(port), timeout=timeout_s, context=tls)

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
        except (OSError, http.client.HTTPException, ValueError) as exc:
            # ValueError: the ssl module's "read on closed or unwrapped SSL socket", when abort() shut
            # a TLS connection down from another thread just as this one went on reading it.
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

    def connect(self) -> None:
        """Open the connection now if it is not open (so that `abort()` from another thread reaches it)."""
        if self._conn.sock is None:
            try:
                self._conn.connect()
            except OSError as exc:
                self._conn.close()
                raise HttpError(f"connect {self.addr}: {type(exc).__name__}: {exc}") from None

    def abort(self) -> None:
        """From another thread: make a request blocked on this connection fail now (shutdown of the
        socket: the blocked read sees end-of-file). The owner's next request opens a new connection."""
        sock = self._conn.sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def reconnect(self) -> None:
        """Drop the connection (the next request opens a fresh one: no idle-timeout surprise)."""
        self._conn.close()

    def close(self) -> None:
        self._conn.close()


def call(
    addr: str,
    method: str,
    path: str,
    doc: Any = None,
    timeout_s: float = CONTROL_TIMEOUT_S,
    tls: ssl.SSLContext | None = None,
) -> tuple[int, Any]:
    """One control-plane request on a fresh connection (a TLS handshake each, with `tls`); raises
    HttpError when there is no answer."""
    conn = Http(addr, timeout_s, tls)
    try:
        return conn.json(method, path, doc)
    finally:
        conn.close()


class AdminTls:
    """The TLS client context of a cluster's admin certificate, read from the cluster's own config dir
    once `cluster init` has written it (None before), then kept: one context for every connection."""

    def __init__(self, config_dir: Path) -> None:
        self.config_dir = config_dir
        self._context: ssl.SSLContext | None = None

    def context(self) -> ssl.SSLContext | None:
        if self._context is None:
            creds = admin_credentials(self.config_dir)
            if creds is not None:
                self._context = creds.context()
        return self._context

    def require(self) -> ssl.SSLContext:
        context = self.context()
        if context is None:
            raise HarnessError(f"no admin certificate in {self.config_dir}: the cluster was never founded")
        return context


def child_env(config_dir: Path) -> dict[str, str]:
    """A daemon's environment: ours, with `WARREN_CONFIG_DIR` set to its cluster's own config dir (where
    `cluster init` writes the admin certificate instead of the user's ~/.config)."""
    return {**os.environ, CONFIG_DIR_ENV: str(config_dir)}


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

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

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

    def freeze(self) -> None:
        """SIGSTOP of the process group; returns once the process shows as stopped in /proc."""
        if self.proc is None:
            raise HarnessError(f"{self.name} was never started")
        os.killpg(self.proc.pid, signal.SIGSTOP)
        deadline = time.monotonic() + SIGNAL_EFFECT_TIMEOUT_S
        while _proc_state(self.proc.pid) not in ("T", None):
            if time.monotonic() > deadline:
                raise HarnessError(
                    f"{self.name} did not stop within {SIGNAL_EFFECT_TIMEOUT_S:g} s of SIGSTOP"
                )
            time.sleep(0.0005)

    def thaw(self) -> None:
        """SIGCONT of the process group (after `freeze()`)."""
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGCONT)

    def terminate(self) -> None:
        """SIGTERM of the process (a graceful stop); returns at once, see `wait_exit()`."""
        if self.proc is None:
            raise HarnessError(f"{self.name} was never started")
        os.kill(self.proc.pid, signal.SIGTERM)

    def disrupt(self, variant: str) -> None:
        """The failover scenarios' ways of losing a member: `sigkill` (kill()), `sigstop` (freeze())
        or `graceful` (terminate())."""
        if variant == "sigkill":
            self.kill()
        elif variant == "sigstop":
            self.freeze()
        elif variant == "graceful":
            self.terminate()
        else:
            raise ValueError(f"unknown variant {variant!r}; expected sigkill, sigstop or graceful")

    def wait_exit(self, timeout_s: float) -> int | None:
        """The exit status, or None if it still runs after `timeout_s`."""
        if self.proc is None:
            return None
        try:
            return self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return None

    def log_size(self) -> int:
        try:
            return self.log_path.stat().st_size
        except OSError:
            return 0

    def log_since(self, offset: int) -> str:
        """The log from byte `offset` on (e.g. what one incarnation wrote after a signal)."""
        try:
            with open(self.log_path, "rb") as f:
                f.seek(offset)
                return f.read().decode("utf-8", errors="replace")
        except OSError:
            return ""

    def exit_note(self) -> str:
        """Why it is not running (exit code and the log's last lines), for error messages."""
        code = self.proc.poll() if self.proc else None
        try:
            tail = self.log_path.read_text(errors="replace").strip().splitlines()[-3:]
        except OSError:
            tail = []
        return f"{self.name} exited with {code}: " + " / ".join(tail)


def _proc_state(pid: int) -> str | None:
    """The state letter of /proc/PID/stat ("R", "S", "T", "Z", ...); None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[0]  # the name in parentheses may itself hold spaces


# Where a manager runs: its host address, its (API, Raft, metrics) ports (None: free loopback ports) and a
# command prefix (e.g. ["ip", "netns", "exec", NAME]; empty: none).
Host = tuple[str, tuple[int, int, int] | None, Sequence[str]]


class ManagerProc(Proc):
    def __init__(
        self,
        index: int,
        host: str,
        base_dir: Path,
        raft_flags: list[str],
        admin: AdminTls,
        ports: tuple[int, int, int] | None = None,
        prefix: Sequence[str] = (),
    ) -> None:
        self.index = index
        self.admin = admin
        api, raft, metrics = ports or (free_port(host), free_port(host), free_port(host))
        self.api_addr = f"{host}:{api}"
        self.raft_addr = f"{host}:{raft}"
        self.metrics_addr = f"{host}:{metrics}"
        self.data_dir = base_dir / f"manager{index}"
        self.raft_flags = raft_flags
        self.prefix = list(prefix)
        log = base_dir / f"manager{index}.log"
        super().__init__(f"manager{index}@{self.api_addr}", [], log, child_env(admin.config_dir))

    @property
    def addr(self) -> str:
        """Where clients send writes (the API)."""
        return self.api_addr

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
        self.argv = [*self.prefix, sys.executable, "-m", "warren.cli.main", "cluster", "init", *self.flags()]
        self.start()

    def join(self, token: str, via: str) -> None:
        self.argv = [
            *self.prefix, sys.executable, "-m", "warren.cli.main", "manager", "join",
            "--token", token, "--manager", via, *self.flags(),
        ]  # fmt: skip
        self.start()

    def http(self, timeout_s: float) -> Http:
        """A keep-alive HTTPS connection to the API with the cluster's admin certificate."""
        return Http(self.api_addr, timeout_s, self.admin.require())

    def call(
        self, method: str, path: str, doc: Any = None, timeout_s: float = CONTROL_TIMEOUT_S
    ) -> tuple[int, Any]:
        """One control-plane request on a fresh HTTPS connection (`call`); HttpError without an answer
        (or before the cluster's admin certificate exists)."""
        tls = self.admin.context()
        if tls is None:
            raise HttpError(f"{method} {self.api_addr}{path}: no admin certificate yet")
        return call(self.api_addr, method, path, doc, timeout_s, tls)

    def ready(self) -> bool:
        try:
            status, _ = self.call("GET", "/v1/ready")
        except HttpError:
            return False
        return status == 200

    def raft_state(self, timeout_s: float = CONTROL_TIMEOUT_S) -> dict[str, Any] | None:
        """The /v1/ready body (role, term, commit and applied index), whether ready or not; None when
        there is no answer."""
        try:
            _, doc = self.call("GET", "/v1/ready", timeout_s=timeout_s)
        except HttpError:
            return None
        return doc if isinstance(doc, dict) and "applied_index" in doc else None

    def cluster(self) -> dict[str, Any] | None:
        try:
            status, doc = self.call("GET", "/v1/cluster")
        except HttpError:
            return None
        return doc if status == 200 and isinstance(doc, dict) else None


class ManagerCluster:
    """Up to five managers on 127.0.0.<first_host + i>; `start(n)` forms the cluster through the CLI.

    `raft_flags` are passed to every manager (e.g. ["--raft-heartbeat-timeout", "1s"]); none = the
    defaults of warren/config.py. `hosts` (one per manager) replaces the loopback addresses, e.g. with
    a NetnsLab's hosts. The admin certificate goes to `base_dir/config` (`admin`), never ~/.config.
    """

    def __init__(
        self,
        base_dir: Path,
        raft_flags: list[str] | None = None,
        first_host: int = 50,
        hosts: Sequence[Host] | None = None,
    ) -> None:
        self.base_dir = base_dir
        self.raft_flags = list(raft_flags or [])
        self.first_host = first_host
        self.hosts = list(hosts) if hosts is not None else None
        self.admin = AdminTls(base_dir / "config")
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
        hosts = self.hosts or [(f"127.0.0.{self.first_host + i}", None, ()) for i in range(1, n + 1)]
        if len(hosts) < n:
            raise HarnessError(f"{n} managers need {n} hosts, got {len(hosts)}")
        self.managers = [
            ManagerProc(i, host, self.base_dir, self.raft_flags, self.admin, ports, prefix)
            for i, (host, ports, prefix) in enumerate(hosts[:n], start=1)
        ]
        first = self.managers[0]
        first.init()
        self.wait_member(first)
        status, doc = first.call("POST", "/v1/cluster/join-tokens", {"role": "manager"})
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

    def wait_converged(self, timeout_s: float = FORM_TIMEOUT_S) -> ManagerProc:
        """The leader, once every live manager has applied the leader's commit index (read once, at the
        start): a stable leader alone does not mean a manager that was cut off has caught up."""
        leader = self.wait_stable(timeout_s)
        state = leader.raft_state()
        if state is None or state.get("commit_index") is None:
            raise HarnessError(f"{leader.name} did not report its commit index")
        target = int(state["commit_index"])
        deadline = time.monotonic() + timeout_s
        applied: dict[str, Any] = {}
        while time.monotonic() < deadline:
            applied = {m.name: (m.raft_state() or {}).get("applied_index") for m in self.live()}
            if all(a is not None and int(a) >= target for a in applied.values()):
                return leader
            time.sleep(POLL_S)
        raise HarnessError(
            f"managers did not all apply the leader's commit index {target} within {timeout_s:g} s: {applied}"
        )

    def recover(self, m: ManagerProc) -> None:
        """Restart a killed manager with its own command (it resumes from its data dir); wait until it is
        a ready follower and every manager agrees on the leader."""
        m.start()
        self.wait_member(m)
        self.wait_stable()
