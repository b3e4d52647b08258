"""Harness for real manager daemons started through the `warren` CLI: start, join, kill, stop, resume.

`ManagerProc` is one `warren cluster init` / `warren manager join` process with its own data dir, its
API, Raft and metrics addresses and its stdout/stderr captured to files. `ManagerCluster` forms 1..n
managers with join tokens (the path an operator takes) and finds the leader from `GET /v1/cluster`.
Both can run a manager inside a network namespace (see netns.py) by prefixing its command.

Like cluster.py, everything waits on conditions (`wait_for`, polled every 50 ms), never on sleeps, and
teardown kills every process it started whatever state the cluster is in.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration import nodeproc
from tests.integration.nodeproc import REPO_ROOT, free_port
from warren.pki import userconfig

T = TypeVar("T")

POLL_S = 0.05
WARREN = [sys.executable, "-m", "warren.cli.main"]
STARTED_LINE = "✓ Manager started"
NODE_ID = "Node ID: "
# Timers of every test manager: slower than the defaults (150 ms heartbeat timeout: heartbeats every
# 50 ms, elections after 150-300 ms) so that a loaded 2-core machine never causes a spurious election
# (tests assert "no election" after a follower dies), still fast enough that a failover takes about a
# second: heartbeats every 167 ms, a follower stands after 500-1000 ms without a leader.
# `--manager-only`: the manager tests are about the control plane; the worker tests start workers of
# their own (tests/integration/workers.py) and opt into a hybrid manager where they test it.
TIMER_FLAGS = ["--raft-heartbeat-timeout", "500ms", "--raft-election-timeout", "500ms", "--manager-only"]
# Loopback hosts 127.0.0.N handed to managers (one per manager, never reused within a run).
_HOSTS = itertools.cycle(range(60, 250))


class WaitTimeout(AssertionError):
    """A condition awaited by `wait_for` did not become true in time."""


def wait_for(
    predicate: Callable[[], T | None],
    timeout: float,
    what: str,
    *,
    interval: float = POLL_S,
    detail: Callable[[], str] | None = None,
) -> T:
    """Poll `predicate` until it returns something truthy, and return that; WaitTimeout otherwise.

    HTTP errors (a manager down or unreachable) count as "not yet". The failure message names `what`,
    the last value or error seen, and `detail()` (e.g. log tails) if given.
    """
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            value = predicate()
        except (httpx.HTTPError, OSError, KeyError, ValueError) as exc:
            value, last = None, exc
        else:
            last = value
        if value:
            return value
        if time.monotonic() >= deadline:
            extra = f"\n{detail()}" if detail is not None else ""
            raise WaitTimeout(f"timed out after {timeout}s waiting for {what}; last seen: {last!r}{extra}")
        time.sleep(interval)


# Admin credentials by manager address: test managers get loopback hosts never reused within a run.
_CREDENTIALS: dict[str, userconfig.ClientCredentials] = {}


def credentials(addr: str) -> userconfig.ClientCredentials:
    """The admin credentials `cluster init` wrote for the cluster of the manager at `addr` (found the
    way the CLI finds them)."""
    found = _CREDENTIALS.get(addr)
    if found is None:
        found = userconfig.find([addr])
        if found is None:
            where = userconfig.config_dir()
            raise AssertionError(f"no admin certificate for the cluster at {addr} in {where}")
        _CREDENTIALS[addr] = found
    return found


def api(addr: str, timeout: float = 5.0) -> httpx.Client:
    """An HTTPS client of the manager API at `addr` ("host:port") with the cluster's admin certificate;
    use as a context manager."""
    return httpx.Client(base_url=f"https://{addr}", timeout=timeout, verify=credentials(addr).context())


def get_json(addr: str, path: str, timeout: float = 3.0) -> Any:
    """GET `path` on `addr` and return the JSON body of a 200 answer (HTTPStatusError otherwise)."""
    with api(addr, timeout) as client:
        response = client.get(path)
        response.raise_for_status()
        return response.json()


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text -> {sample name with sorted labels: value}, e.g. 'warren_raft_state{role="leader"}'."""
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            out[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return out


def scrape(metrics_addr: str, timeout: float = 3.0) -> dict[str, float]:
    with httpx.Client(timeout=timeout) as client:
        response = client.get(f"http://{metrics_addr}/metrics")
        response.raise_for_status()
        return parse_metrics(response.text)


@dataclass(frozen=True)
class CliResult:
    argv: list[str]
    returncode: int
    stdout: str
    stderr: str

    def __str__(self) -> str:
        return (
            f"`warren {' '.join(self.argv)}` exited {self.returncode}\n"
            f"--- stdout ---\n{self.stdout}--- stderr ---\n{self.stderr}"
        )

    def ok(self) -> CliResult:
        assert self.returncode == 0, str(self)
        return self


def child_env() -> dict[str, str]:
    env = nodeproc.child_env()
    env.pop("WARREN_MANAGER", None)  # every client command names its --manager
    return env


def cli(*args: str, timeout: float = 60.0, prefix: Sequence[str] = ()) -> CliResult:
    """Run one `warren` client command to completion (it must finish within `timeout`)."""
    argv = [str(a) for a in args]
    done = subprocess.run(
        [*prefix, *WARREN, *argv],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO_ROOT,
        env=child_env(),
        stdin=subprocess.DEVNULL,
    )
    return CliResult(argv, done.returncode, done.stdout, done.stderr)


# -- one manager ----------------------------------------------------------------------------------------


class DaemonProc:
    """One `warren` daemon run in the foreground (a manager or a worker), surviving kill/terminate/
    restart cycles. Output of every incarnation is appended to `<base>/<label>.out` (stdout) and
    `<label>.err` (stderr, the daemon's log); `prefix` is prepended to the command (e.g.
    `ip netns exec NAME`)."""

    def __init__(self, label: str, base_dir: Path, prefix: Sequence[str] = ()) -> None:
        self.label = label
        self.heading = label  # how log tails name it
        self.prefix = list(prefix)
        self.data_dir = base_dir / f"{label}-data"
        self.out_path = base_dir / f"{label}.out"
        self.err_path = base_dir / f"{label}.err"
        self.proc: subprocess.Popen[bytes] | None = None
        self._out_offset = 0  # where the current incarnation's stdout starts
        self._err_offset = 0

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def spawn(self, args: Sequence[str]) -> None:
        """Start `warren ARGS` (returns at once)."""
        if self.alive:
            raise RuntimeError(f"{self.label} is already running")
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        self._out_offset = self.out_path.stat().st_size if self.out_path.exists() else 0
        self._err_offset = self.err_path.stat().st_size if self.err_path.exists() else 0
        with open(self.out_path, "ab") as out, open(self.err_path, "ab") as err:
            self.proc = subprocess.Popen(
                [*self.prefix, *WARREN, *args],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                cwd=REPO_ROOT,
                env=child_env(),
                start_new_session=True,  # a Ctrl-C aimed at pytest must not reach the daemons
            )

    def check_alive(self, doing: str) -> None:
        """Fail at once (with the log) if the daemon exited while `doing`."""
        if not self.alive:
            code = self.proc.poll() if self.proc else None
            raise AssertionError(f"{self.label} exited with {code} while {doing}\n{self.log_tail()}")

    def wait_exit(self, timeout: float) -> int | None:
        """The exit status, or None if the process is still running after `timeout`."""
        return nodeproc.wait_exit(self.proc, timeout)

    def kill(self) -> None:
        """SIGKILL: no hand-over, no flush (a power cut, as the rest of the cluster sees it)."""
        nodeproc.kill(self.proc)

    def terminate(self, timeout: float = 20.0) -> int:
        """SIGTERM and wait for the exit status (SIGKILL and fail if it does not exit in time)."""
        assert self.proc is not None
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
        code = self.wait_exit(timeout)
        if code is None:
            self.kill()
            raise AssertionError(f"{self.label} did not exit within {timeout}s of SIGTERM\n{self.log_tail()}")
        return code

    # -- output ---------------------------------------------------------------------------------------

    def output(self) -> str:
        """Stdout of the current incarnation."""
        return _read_from(self.out_path, self._out_offset)

    def errors(self) -> str:
        """Stderr (the daemon's log) of the current incarnation."""
        return _read_from(self.err_path, self._err_offset)

    def all_output(self) -> str:
        return _read_from(self.out_path, 0) + _read_from(self.err_path, 0)

    @property
    def name(self) -> str:
        """The node name from the "Node ID: ..." line (the same in every incarnation)."""
        for line in _read_from(self.out_path, 0).splitlines():
            if NODE_ID in line:
                return line.split(NODE_ID, 1)[1].split(")", 1)[0].strip()
        raise AssertionError(f"{self.label} printed no Node ID\n{self.log_tail()}")

    def has_name(self) -> bool:
        return NODE_ID in _read_from(self.out_path, 0)

    def log_tail(self, lines: int = 30) -> str:
        out = "\n".join(self.output().splitlines()[-lines:])
        err = "\n".join(self.errors().splitlines()[-lines:])
        return f"---- {self.heading} stdout ----\n{out}\n---- {self.label} stderr ----\n{err}"


class ManagerProc(DaemonProc):
    """One manager daemon (`warren cluster init` / `manager join`) with its own addresses."""

    def __init__(
        self,
        label: str,
        base_dir: Path,
        host: str,
        *,
        ports: tuple[int, int, int] | None = None,
        prefix: Sequence[str] = (),
        extra_flags: Sequence[str] = TIMER_FLAGS,
    ) -> None:
        super().__init__(label, base_dir, prefix)
        self.host = host
        api_port, raft_port, metrics_port = ports or (free_port(host), free_port(host), free_port(host))
        self.api_addr = f"{host}:{api_port}"
        self.raft_addr = f"{host}:{raft_port}"
        self.metrics_addr = f"{host}:{metrics_port}"
        self.heading = f"{label} ({self.api_addr})"
        self.extra_flags = list(extra_flags)
        self.args: list[str] | None = None  # the CLI arguments of init/join, reused by restart()

    def __repr__(self) -> str:
        return f"ManagerProc({self.label}, api={self.api_addr}, pid={self.pid})"

    # -- commands -------------------------------------------------------------------------------------

    def daemon_flags(self) -> list[str]:
        return [
            "--listen-addr", self.api_addr,
            "--raft-addr", self.raft_addr,
            "--metrics-addr", self.metrics_addr,
            "--data-dir", str(self.data_dir),
            *self.extra_flags,
        ]  # fmt: skip

    def init(
        self,
        *,
        restore: str | os.PathLike[str] | None = None,
        restore_key: str | os.PathLike[str] | None = None,
        wait: bool = True,
    ) -> ManagerProc:
        """`warren cluster init` (optionally `--restore FILE [--restore-key KEY]`); waits until it serves
        unless wait=False."""
        self.args = ["cluster", "init", *self.daemon_flags()]
        if restore is not None:
            self.args += ["--restore", str(restore)]
        if restore_key is not None:
            self.args += ["--restore-key", str(restore_key)]
        self.start()
        if wait:
            self.wait_started()
        return self

    def join(self, token: str, via: str, *, wait: bool = True) -> ManagerProc:
        """`warren manager join --token T --manager VIA`; waits until it serves unless wait=False."""
        self.args = ["manager", "join", "--token", token, "--manager", via, *self.daemon_flags()]
        self.start()
        if wait:
            self.wait_started()
        return self

    # -- lifecycle ------------------------------------------------------------------------------------

    def start(self) -> None:
        """Spawn the daemon with the current command (returns at once)."""
        if self.args is None:
            raise RuntimeError(f"{self.label}: init() or join() first")
        self.spawn(self.args)

    def wait_started(self, timeout: float = 45.0) -> None:
        """Until stdout has the "✓ Manager started" line and /v1/ready answers 200."""

        def started() -> bool:
            self.check_alive("starting")
            if STARTED_LINE not in self.output():
                return False
            with api(self.api_addr, 2.0) as client:
                return client.get("/v1/ready").status_code == 200

        wait_for(started, timeout, f"{self.label} to start and be ready", detail=self.log_tail)

    def restart(self, timeout: float = 45.0) -> None:
        """Rerun the very same command (resume from the data dir) and wait until it serves."""
        self.start()
        self.wait_started(timeout)

    # -- API ------------------------------------------------------------------------------------------

    def info(self, timeout: float = 3.0) -> dict[str, Any]:
        """GET /v1/cluster on this manager."""
        result: dict[str, Any] = get_json(self.api_addr, "/v1/cluster", timeout)
        return result

    def services(self, *, consistent: bool = False, timeout: float = 5.0) -> list[dict[str, Any]]:
        path = "/v1/services?consistent=true" if consistent else "/v1/services"
        result: list[dict[str, Any]] = get_json(self.api_addr, path, timeout)
        return result

    def metrics(self) -> dict[str, float]:
        return scrape(self.metrics_addr)


def _read_from(path: Path, offset: int) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            return f.read().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return ""


def service_names(services: Iterable[dict[str, Any]]) -> list[str]:
    return sorted(s["name"] for s in services)


# -- a cluster of managers -----------------------------------------------------------------------------


class ManagerCluster:
    """Managers formed the operator's way: `cluster init`, then `join-token manager` + `manager join`.

    `hosts` yields (host, ports or None, command prefix) for each new manager: by default a loopback
    address of its own with free ports and no prefix; a NetnsLab's hosts give namespace addresses, fixed
    ports and the `ip netns exec NAME` prefix.
    """

    def __init__(
        self,
        base_dir: Path,
        *,
        hosts: Iterator[tuple[str, tuple[int, int, int] | None, list[str]]] | None = None,
        extra_flags: Sequence[str] = TIMER_FLAGS,
    ) -> None:
        self.base_dir = Path(base_dir)
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self.managers: list[ManagerProc] = []
        self._hosts = hosts or ((f"127.0.0.{n}", None, []) for n in _HOSTS)
        self.join_outputs: list[str] = []  # stdout of each join, in order
        self.extra_flags = list(extra_flags)  # daemon flags of every manager, after the addresses

    def new_manager(self) -> ManagerProc:
        """Create (not start) the next manager with its own addresses and data dir."""
        host, ports, prefix = next(self._hosts)
        m = ManagerProc(
            f"m{len(self.managers) + 1}",
            self.base_dir,
            host,
            ports=ports,
            prefix=prefix,
            extra_flags=self.extra_flags,
        )
        self.managers.append(m)
        return m

    def init(self) -> ManagerProc:
        return self.new_manager().init()

    def join_token(self, via: ManagerProc, role: str = "manager") -> str:
        result = cli("cluster", "join-token", role, "-q", "--manager", via.api_addr).ok()
        token = result.stdout.strip()
        assert token.startswith("SWMTKN-1-"), str(result)
        return token

    def add_manager(self, via: ManagerProc | None = None) -> ManagerProc:
        """Join one more manager with a fresh token obtained through `via` (default: the first)."""
        via = via or self.managers[0]
        token = self.join_token(via)
        m = self.new_manager().join(token, via.api_addr)
        self.join_outputs.append(m.output())
        return m

    def form(self, n: int) -> list[ManagerProc]:
        """init + (n - 1) joins, one after another; returns the managers."""
        self.init()
        for _ in range(n - 1):
            self.add_manager()
        return list(self.managers)

    def live(self) -> list[ManagerProc]:
        return [m for m in self.managers if m.alive]

    def close(self) -> None:
        """SIGKILL every manager (teardown must not depend on the cluster being healthy)."""
        for m in self.managers:
            with contextlib.suppress(OSError):
                m.kill()

    def log_tails(self, lines: int = 40) -> str:
        return "\n".join(m.log_tail(lines) for m in self.managers)

    # -- observation ----------------------------------------------------------------------------------

    def leader(self, among: Iterable[ManagerProc] | None = None, timeout: float = 20.0) -> ManagerProc:
        """The manager that every given (default: live) manager names as leader, itself included."""
        group = list(among) if among is not None else self.live()
        by_name = {m.name: m for m in group}

        def agreed() -> ManagerProc | None:
            names = set()
            for m in group:
                leader = m.info()["leader"]
                names.add(leader["name"] if leader else None)
            if len(names) != 1:
                return None
            (name,) = names
            if name not in by_name:
                return None
            chosen = by_name[name]
            return chosen if chosen.metrics()["warren_raft_leader"] == 1 else None

        return wait_for(
            agreed,
            timeout,
            f"managers {[m.label for m in group]} to agree on one leader among them",
            detail=self.log_tails,
        )

    def followers(self, leader: ManagerProc) -> list[ManagerProc]:
        return [m for m in self.live() if m is not leader]

    def wait_same_services(
        self, managers: Iterable[ManagerProc], reference: ManagerProc, timeout: float = 20.0
    ) -> list[dict[str, Any]]:
        """Until every manager's local GET /v1/services equals `reference`'s consistent read."""
        group = list(managers)

        def same() -> list[dict[str, Any]] | None:
            want = reference.services(consistent=True)
            return want if all(m.services() == want for m in group) else None

        return wait_for(
            same,
            timeout,
            f"{[m.label for m in group]} to hold {reference.label}'s services",
            detail=self.log_tails,
        )


@contextlib.contextmanager
def manager_clusters(
    base_dir: Path, request: pytest.FixtureRequest
) -> Iterator[Callable[..., ManagerCluster]]:
    """Factory of ManagerClusters for a fixture: kills them all at teardown and prints their logs when
    the test failed (the `rep_*` attributes are set by tests/conftest.py)."""
    clusters: list[ManagerCluster] = []

    def make(**kwargs: Any) -> ManagerCluster:
        c = ManagerCluster(base_dir / f"managers{len(clusters)}", **kwargs)
        clusters.append(c)
        return c

    try:
        yield make
    finally:
        failed = any(
            getattr(getattr(request.node, f"rep_{when}", None), "failed", False) for when in ("setup", "call")
        )
        for c in clusters:
            try:
                if failed:
                    print(f"\n==== manager logs of {c.base_dir} ====\n{c.log_tails(60)}")
            finally:
                c.close()


# -- writes through the API ---------------------------------------------------------------------------


def create_service(addr: str, name: str, timeout: float = 10.0, **spec: Any) -> httpx.Response:
    body = {"name": name, "image": spec.pop("image", "nginx:1.27"), **spec}
    with api(addr, timeout) as client:
        return client.post("/v1/services", json=body)


def assert_error_body(
    response: httpx.Response, status: int | tuple[int, ...], code: str | None = None
) -> dict[str, Any]:
    """The answer has the status and the API's error body `{"error", "message"}` (docs/api.md)."""
    statuses = status if isinstance(status, tuple) else (status,)
    assert response.status_code in statuses, (
        f"{response.request.method} {response.request.url}: expected {statuses}, "
        f"got {response.status_code}: {response.text[:500]}"
    )
    body = response.json()
    assert isinstance(body, dict) and set(body) == {"error", "message"}, body
    assert isinstance(body["message"], str) and body["message"] and "\n" not in body["message"], body
    if code is not None:
        assert body["error"] == code, body
    return body
