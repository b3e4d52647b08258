"""Real manager daemons as the integration tests see them: warren.testing's harness (the one the benches
and `warren drill` use) with the tests' conventions and their API helpers.

`ManagerProc` is one `warren cluster init` / `warren manager join` process (a warren.testing
ManagerDaemon) running this checkout's code, with its data dir and its stdout and stderr in files of
its own under the test's directory. `ManagerCluster` forms 1..n managers with join tokens from the CLI
(the path an operator takes) and finds the leader from `GET /v1/cluster`. Both can run a manager
inside a network namespace (see netns.py) by prefixing its command.

Everything waits on conditions (`eventually`, polled every 50 ms), never on sleeps, and teardown kills
every process it started whatever state the cluster is in.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import subprocess
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.nodeproc import REPO_ROOT
from warren.pki import userconfig
from warren.testing import managers as harness
from warren.testing.managers import ManagerDaemon
from warren.testing.process import WARREN, Daemon, daemon_env
from warren.testing.wait import eventually

STARTED_LINE = "✓ Manager started"
# Timers of every test manager: slower than the defaults (150 ms heartbeat timeout: heartbeats every
# 50 ms, elections after 150-300 ms) so that a loaded 2-core machine never causes a spurious election
# (tests assert "no election" after a follower dies), still fast enough that a failover takes about a
# second: heartbeats every 167 ms, a follower stands after 500-1000 ms without a leader.
# `--manager-only`: the manager tests are about the control plane; the worker tests start workers of
# their own (tests/integration/workers.py) and opt into a hybrid manager where they test it.
TIMER_FLAGS = ["--raft-heartbeat-timeout", "500ms", "--raft-election-timeout", "500ms", "--manager-only"]
# Loopback hosts 127.0.0.N handed to managers (one per manager, never reused within a run).
_HOSTS = itertools.cycle(range(60, 250))


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
    """A `warren` child's environment: this checkout's code, no WARREN_MANAGER (every client command
    names its --manager)."""
    return daemon_env(pythonpath=REPO_ROOT)


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


class DaemonProc(Daemon):
    """A `warren` daemon (a manager or a worker) as the tests run it: this checkout's code, its stdout
    in `<base>/<label>.out`, its stderr (the daemon's log) in `<label>.err`, its data in
    `<label>-data`; `prefix` is prepended to the command (e.g. `ip netns exec NAME`)."""

    def __init__(self, label: str, base_dir: Path, prefix: Sequence[str] = ()) -> None:
        super().__init__(label, [], base_dir / f"{label}.err", out_path=base_dir / f"{label}.out",
                         cwd=REPO_ROOT, env=child_env(), prefix=prefix)
        self.data_dir = base_dir / f"{label}-data"

    def spawn(self, args: Sequence[str]) -> None:
        """Start `warren ARGS` (returns at once)."""
        self.argv = [*WARREN, *args]
        self.start()


class ManagerProc(ManagerDaemon):
    """One manager daemon (`warren cluster init` / `manager join`) with its own addresses, as the tests
    run it (see DaemonProc)."""

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
        super().__init__(
            label, host, base_dir / f"{label}-data", base_dir / f"{label}.err",
            out_path=base_dir / f"{label}.out", cwd=REPO_ROOT, env=child_env(), ports=ports, prefix=prefix,
            flags=extra_flags,
        )

    def __repr__(self) -> str:
        return f"ManagerProc({self.label}, api={self.api_addr}, pid={self.pid})"

    # -- commands -------------------------------------------------------------------------------------

    def init(
        self,
        *,
        restore: str | os.PathLike[str] | None = None,
        restore_key: str | os.PathLike[str] | None = None,
        wait: bool = True,
    ) -> ManagerProc:
        """`warren cluster init` (optionally `--restore FILE [--restore-key KEY]`); waits until it serves
        unless wait=False."""
        super().init(restore=restore, restore_key=restore_key)
        if wait:
            self.wait_started()
        return self

    def join(self, token: str, via: str, *, wait: bool = True) -> ManagerProc:
        """`warren manager join --token T --manager VIA`; waits until it serves unless wait=False."""
        super().join(token, via)
        if wait:
            self.wait_started()
        return self

    # -- lifecycle ------------------------------------------------------------------------------------

    def wait_started(self, timeout: float = 45.0) -> None:
        """Until stdout has the "✓ Manager started" line and /v1/ready answers 200."""

        def started() -> bool:
            self.check_alive("starting")
            if STARTED_LINE not in self.output():
                return False
            with api(self.api_addr, 2.0) as client:
                return client.get("/v1/ready").status_code == 200

        eventually(started, timeout, f"{self.label} to start and be ready", detail=self.log_tail)

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
        """init + (n - 1) joins with a token from the CLI, one after another; returns the managers."""

        def joined(m: ManagerProc) -> None:
            if m is not self.managers[0]:
                self.join_outputs.append(m.output())

        harness.form(n, self.new_manager, self.join_token, joined)
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

        return eventually(
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

        return eventually(
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
