"""Warren managers for the API benchmarks, started through the CLI exactly as an operator would.

`ManagerCluster` founds a cluster with `warren cluster init`, issues a manager join token over the API
and adds the others with `warren manager join`, one at a time, each on its own loopback address. Every
manager runs in its own process group, so `kill()` is a SIGKILL of the whole group and nothing
outlives the benchmark: `close()` (and the context manager) kills whatever is still running, and
`sigterm_raises()` turns a SIGTERM of the benchmark run into an exception so those `finally` blocks run.

The processes are warren.testing's `Daemon`s (the harness of the integration tests and of `warren
drill` too): besides SIGKILL, one can be frozen (`freeze()`: SIGSTOP of its group, sockets stay open),
thawed (`thaw()`) and asked to stop (`terminate()`: SIGTERM, as an operator or init system would). A
manager can run inside a network namespace (benches/partition.py): its command is then prefixed with
`ip netns exec NAME` (which execs, so the process group is still the manager's) and it listens on fixed
ports.

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
import logging
import signal
import socket
import ssl
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from tests.integration.nodeproc import REPO_ROOT
from warren.testing.managers import Host, ManagerDaemon, admin_credentials, form
from warren.testing.process import daemon_env
from warren.testing.wait import NotYet, WaitTimeout, eventually

log = logging.getLogger(__name__)

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


class ManagerProc(ManagerDaemon):
    """manager<index>, labelled with its API address; its stdout and stderr go to one log."""

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
        super().__init__(
            f"manager{index}", host, base_dir / f"manager{index}", base_dir / f"manager{index}.log",
            cwd=REPO_ROOT, env=daemon_env(admin.config_dir), ports=ports, prefix=prefix,
            flags=["--manager-only", *raft_flags],  # the control-plane benchmarks measure managers alone
        )
        self.label = f"manager{index}@{self.api_addr}"
        self.index = index
        self.admin = admin

    @property
    def addr(self) -> str:
        """Where clients send writes (the API)."""
        return self.api_addr

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
        """Found the cluster on manager 1, join the others one by one; returns the leader.

        A manager that runs but never shows as a ready member (a rare failure of this harness under load
        that is not understood yet: docs/decisions.md, "A cluster formation that stalls is retried
        once") makes it form the cluster once more, afresh in `base_dir/retry`, with a warning that says
        what the harness last saw."""
        try:
            return self._form(n, self.base_dir)
        except HarnessError as exc:
            if "did not become a ready member" not in str(exc):
                raise
            log.warning("forming the cluster stalled, forming it again afresh: %s", exc)
            self.close()
            self.admin = AdminTls(self.base_dir / "retry" / "config")
            return self._form(n, self.base_dir / "retry")

    def _form(self, n: int, base_dir: Path) -> ManagerProc:
        base_dir.mkdir(parents=True, exist_ok=True)
        hosts = self.hosts or [(f"127.0.0.{self.first_host + i}", None, ()) for i in range(1, n + 1)]
        if len(hosts) < n:
            raise HarnessError(f"{n} managers need {n} hosts, got {len(hosts)}")
        self.managers = [
            ManagerProc(i, host, base_dir, self.raft_flags, self.admin, ports, prefix)
            for i, (host, ports, prefix) in enumerate(hosts[:n], start=1)
        ]
        form(n, iter(self.managers).__next__, _join_token, self.wait_member)
        return self.wait_stable()

    def wait_member(self, m: ManagerProc, timeout_s: float = FORM_TIMEOUT_S) -> None:
        """Until `m` answers /v1/ready with 200 and the leader lists it as a ready leader or follower."""

        why = ["not asked yet"]  # what the last look saw, for the error

        def member() -> bool:
            if not m.alive:
                raise HarnessError(m.exit_note())
            try:
                status, body = m.call("GET", "/v1/ready")
            except HttpError as exc:
                why[0] = f"GET /v1/ready: no answer: {exc}"
                return False
            if status != 200:
                why[0] = f"GET /v1/ready: HTTP {status} {body}"
                return False
            leader = self._leader_view(m)
            if leader is None:
                why[0] = f"ready, but no leader's view of the cluster (its own: {m.cluster()})"
                return False
            row = next((r for r in leader["managers"] if r["api_addr"] == m.api_addr), None)
            why[0] = f"the leader lists it as {row} (managers: {leader['managers']})"
            return row is not None and row["status"] == "ready" and row["role"] in ("leader", "follower")

        try:
            eventually(member, timeout_s, f"{m.label} as a ready member", poll_s=POLL_S, not_yet=(NotYet,))
        except WaitTimeout:
            raise HarnessError(
                f"{m.label} did not become a ready member within {timeout_s:g} s; last seen: {why[0]}"
            ) from None

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

        def stable() -> ManagerProc:
            live = self.live()
            seen: dict[str, Any] = {}
            for m in live:
                doc = m.cluster() if m.ready() else None
                seen[m.label] = doc["leader"]["api_addr"] if doc and doc.get("leader") else None
            addrs = set(seen.values())
            leader = next((m for m in live if m.api_addr in addrs), None) if len(addrs) == 1 else None
            if leader is None:
                raise NotYet(seen)
            return leader

        try:
            return eventually(stable, timeout_s, "a stable leader", poll_s=POLL_S, not_yet=(NotYet,))
        except WaitTimeout as exc:
            seen = exc.last.args[0] if isinstance(exc.last, NotYet) else {}
            raise HarnessError(
                f"no stable leader within {timeout_s:g} s (leader seen by each: {seen})"
            ) from None

    def wait_converged(self, timeout_s: float = FORM_TIMEOUT_S) -> ManagerProc:
        """The leader, once every live manager has applied the leader's commit index (read once, at the
        start): a stable leader alone does not mean a manager that was cut off has caught up."""
        leader = self.wait_stable(timeout_s)
        state = leader.raft_state()
        if state is None or state.get("commit_index") is None:
            raise HarnessError(f"{leader.label} did not report its commit index")
        target = int(state["commit_index"])

        def caught_up() -> bool:
            applied = {m.label: (m.raft_state() or {}).get("applied_index") for m in self.live()}
            if not all(a is not None and int(a) >= target for a in applied.values()):
                raise NotYet(applied)
            return True

        try:
            what = f"the leader's commit index {target} applied"
            eventually(caught_up, timeout_s, what, poll_s=POLL_S, not_yet=(NotYet,))
        except WaitTimeout as exc:
            applied = exc.last.args[0] if isinstance(exc.last, NotYet) else {}
            raise HarnessError(
                f"managers did not all apply the leader's commit index {target} "
                f"within {timeout_s:g} s: {applied}"
            ) from None
        return leader

    def recover(self, m: ManagerProc) -> None:
        """Restart a killed manager with its own command (it resumes from its data dir); wait until it is
        a ready follower and every manager agrees on the leader."""
        m.start()
        self.wait_member(m)
        self.wait_stable()


def _join_token(first: ManagerProc) -> str:
    """A manager join token, through the API of `first`."""
    status, doc = first.call("POST", "/v1/cluster/join-tokens", {"role": "manager"})
    if status != 201:
        raise HarnessError(f"join token: HTTP {status}: {doc}")
    return str(doc["token"])
