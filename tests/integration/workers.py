"""Harness for real worker agents (`warren worker start`) next to real managers, and task observation.

`WorkerProc` is one worker process with its own data dir and runtime; `Fleet` is a manager cluster
(tests/integration/managers.py) plus workers joined with worker tokens, the operator's way. Tasks are
observed through the API (`GET /v1/services/{name}/tasks`) and, for what actually runs, through the
Docker Engine (containers labelled with the cluster ID) or /proc (processes carrying WARREN_NODE in
their environment). Teardown removes every container, network and process a test's workers started,
whatever state the cluster is in.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import signal
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from tests.integration.managers import (
    DaemonProc,
    ManagerCluster,
    ManagerProc,
    api,
    cli,
    get_json,
    manager_clusters,
)
from tests.integration.netns import NetnsLab, unavailable_reason
from warren.testing.process import WARREN
from warren.testing.wait import eventually

# Generous: a worker's start includes a Docker Engine ping and adoption of what it already runs.
START_TIMEOUT_S = 45.0


def docker_client() -> Any:
    import docker

    return docker.from_env()


def docker_unavailable_reason() -> str | None:
    try:
        docker_client().ping()
    except Exception as exc:  # any failure to reach the engine means "no Docker here"
        return f"no Docker Engine answers: {exc}"
    return None


def require_docker() -> None:
    """Skip without an engine, except under CI (.ci/run), where a missing engine is a failure."""
    reason = docker_unavailable_reason()
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"CI must reach the Docker Engine: {reason}")
        pytest.skip(reason)


class WorkerProc(DaemonProc):
    """One `warren worker start` daemon; a restart resumes its identity from the data dir. `kill` ends
    the agent only: its containers and processes keep running (a machine crash is `kill` plus
    `kill_tasks`)."""

    def __init__(
        self,
        label: str,
        base_dir: Path,
        managers: Sequence[str],
        *,
        runtime: str = "process",
        labels: Sequence[str] = (),
        prefix: Sequence[str] = (),
        extra: Sequence[str] = (),
    ) -> None:
        super().__init__(label, base_dir, prefix)
        self.managers = list(managers)
        self.runtime = runtime
        self.labels = list(labels)
        self.extra = list(extra)  # more `worker start` flags (--allow-bind ...)

    def __repr__(self) -> str:
        return f"WorkerProc({self.label}, runtime={self.runtime}, pid={self.pid})"

    def start(self, token: str | None = None) -> None:
        """Spawn the agent (with a token the first time; a restart resumes from the data dir)."""
        args = ["worker", "start", "--manager", ",".join(self.managers), "--data-dir", str(self.data_dir)]
        args += ["--runtime", self.runtime]
        for label in self.labels:
            args += ["--label", label]
        if token is not None:
            args += ["--token", token]
        self.argv = [*WARREN, *args, *self.extra]
        super().start()

    def wait_ready(self, via: str, timeout: float = START_TIMEOUT_S) -> None:
        """Until it printed its node ID and the leader (through `via`) lists it ready."""

        def ready() -> bool:
            self.check_alive("starting")
            if not self.has_name():
                return False
            node = get_json(via, f"/v1/nodes/{self.name}")
            return bool(node["state"] == "ready")

        eventually(ready, timeout, f"{self.label} to join and be ready", detail=self.log_tail)

    def task_pids(self) -> list[int]:
        """Processes this worker's process runtime started (WARREN_NODE=<name> in their environment)."""
        if not self.has_name():
            return []
        return task_processes(f"WARREN_NODE={self.name}")

    def kill_tasks(self) -> None:
        """SIGKILL every process this worker's tasks run as (its containers are removed by Fleet)."""
        for pid in self.task_pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def task_processes(marker: str) -> list[int]:
    """PIDs of live processes whose environment contains the line `marker` (e.g. "WARREN_NODE=w")."""
    return list(task_environments(marker))


def task_environments(marker: str) -> dict[int, dict[str, str]]:
    """The environment of each live (not zombie) process whose environment contains the line `marker`."""
    wanted = marker.encode()
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                env = f.read().split(b"\0")
            with open(f"/proc/{entry}/stat", "rb") as f:
                state = f.read().rsplit(b")", 1)[1].split()[0]
        except OSError:
            continue
        if wanted in env and state != b"Z":
            pairs = (item.decode(errors="replace").partition("=") for item in env if b"=" in item)
            found[int(entry)] = {key: value for key, _, value in pairs}
    return found


class Fleet:
    """A manager cluster plus workers; `managers` is the ManagerCluster, `workers` every WorkerProc."""

    def __init__(self, managers: ManagerCluster, base_dir: Path) -> None:
        self.managers = managers
        self.base_dir = base_dir
        self.workers: list[WorkerProc] = []
        self._cluster_ids: set[str] = set()

    @property
    def leader(self) -> ManagerProc:
        return self.managers.leader()

    @property
    def addr(self) -> str:
        """A live manager's API address (any manager serves the API)."""
        return self.managers.live()[0].api_addr

    def start_managers(self, n: int = 1) -> None:
        self.managers.form(n)
        self._cluster_ids.add(self.managers.managers[0].info()["cluster_id"])

    def add_worker(
        self,
        runtime: str = "process",
        *,
        labels: Sequence[str] = (),
        prefix: Sequence[str] = (),
        managers: Sequence[str] | None = None,
        wait: bool = True,
        extra: Sequence[str] = (),
    ) -> WorkerProc:
        via = self.managers.live()[0]
        token = self.managers.join_token(via, "worker")
        worker = WorkerProc(
            f"w{len(self.workers) + 1}",
            self.base_dir,
            managers if managers is not None else [m.api_addr for m in self.managers.live()],
            runtime=runtime,
            labels=labels,
            prefix=prefix,
            extra=extra,
        )
        self.workers.append(worker)
        worker.start(token)
        if wait:
            worker.wait_ready(via.api_addr)
        return worker

    def close(self) -> None:
        for w in self.workers:
            with contextlib.suppress(OSError):
                w.kill()
            w.kill_tasks()
        for cluster_id in self._cluster_ids:
            remove_containers(cluster_id)
            remove_networks(cluster_id)

    def log_tails(self, lines: int = 40) -> str:
        return self.managers.log_tails(lines) + "\n" + "\n".join(w.log_tail(lines) for w in self.workers)

    # -- observation ----------------------------------------------------------------------------------

    def tasks(self, service: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = get_json(self.addr, f"/v1/services/{service}/tasks")
        return result

    def running(self, service: str) -> list[dict[str, Any]]:
        return [t for t in self.tasks(service) if t["state"] == "running" and t["desired_state"] == "running"]

    def wait_running(self, service: str, count: int, timeout: float = 60.0) -> list[dict[str, Any]]:
        """Until exactly `count` tasks of `service` run and no other task of it is still active."""

        def settled() -> list[dict[str, Any]] | None:
            tasks = self.tasks(service)
            running = [t for t in tasks if t["state"] == "running" and t["desired_state"] == "running"]
            busy = [t for t in tasks if t["state"] in ("new", "pending", "assigned", "starting")]
            stopping = [t for t in tasks if t["desired_state"] == "shutdown" and t["state"] == "running"]
            if len(running) == count and not busy and not stopping:
                return running if running else [{"none": True}]
            return None

        found = eventually(
            settled, timeout, f"{count} running tasks of {service}", detail=lambda: self._detail(service)
        )
        return [] if found == [{"none": True}] else found

    def _detail(self, service: str) -> str:
        try:
            rows = "\n".join(
                f"  {t['name']} {t['id']} node={t['node']} desired={t['desired_state']} state={t['state']} "
                f"msg={t['message']!r}"
                for t in self.tasks(service)
            )
        except Exception as exc:  # the detail of a failure must not fail itself
            rows = f"  (tasks unavailable: {exc})"
        return f"tasks of {service}:\n{rows}\n{self.log_tails()}"

    def create(self, name: str, **spec: Any) -> dict[str, Any]:
        with api(self.addr, 15.0) as client:
            response = client.post("/v1/services", json={"name": name, **spec})
        assert response.status_code == 201, response.text
        body: dict[str, Any] = response.json()
        return body

    def update(self, name: str, **changes: Any) -> dict[str, Any]:
        with api(self.addr, 15.0) as client:
            response = client.patch(f"/v1/services/{name}", json=changes)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def cli(self, *args: str, timeout: float = 60.0) -> Any:
        return cli(*args, "--manager", self.addr, timeout=timeout)


def remove_containers(cluster_id: str) -> None:
    """Force-remove every container of the cluster (teardown); nothing if no engine answers."""
    try:
        client = docker_client()
        for c in client.api.containers(all=True, filters={"label": f"warren.cluster={cluster_id}"}):
            with contextlib.suppress(Exception):
                client.api.remove_container(c["Id"], force=True)
    except Exception:  # no engine: nothing was started there
        return


def remove_networks(cluster_id: str) -> None:
    """Remove the cluster's Docker networks (each Docker worker makes one; its stop leaves it), after its
    containers; nothing if no engine answers."""
    try:
        client = docker_client()
        for network in client.api.networks(filters={"label": f"io.warren.cluster={cluster_id}"}):
            with contextlib.suppress(Exception):
                client.api.remove_network(network["Id"])
    except Exception:  # no engine: nothing was made there
        return


# When this test process began: networks made before it (a local cluster of `make run`) are not its own.
_STARTED = time.time()


def remove_idle_networks() -> list[str]:
    """Remove the networks Warren workers made (any cluster's) since this test process began that no
    container is attached to; their names. Nothing if no engine answers."""
    removed = []
    try:
        client = docker_client()
        for network in client.api.networks(filters={"label": "io.warren.cluster"}):
            created = datetime.datetime.fromisoformat(str(network["Created"])[:26].rstrip("Z") + "+00:00")
            if created.timestamp() < _STARTED or client.api.inspect_network(network["Id"]).get("Containers"):
                continue
            with contextlib.suppress(Exception):
                client.api.remove_network(network["Id"])
                removed.append(str(network["Name"]))
    except Exception:  # no engine: nothing was made there
        return removed
    return removed


def containers(cluster_id: str, **labels: str) -> list[dict[str, Any]]:
    """Running containers of the cluster (low-level dicts: Id, Labels, State), filtered by labels."""
    filters = [f"warren.cluster={cluster_id}", *(f"{k}={v}" for k, v in labels.items())]
    result: list[dict[str, Any]] = docker_client().api.containers(filters={"label": filters})
    return result


@contextlib.contextmanager
def fleets(base_dir: Path, request: pytest.FixtureRequest) -> Iterator[Callable[..., Fleet]]:
    """Factory of Fleets for a fixture: tears every one down (logs printed if the test failed)."""
    made: list[Fleet] = []
    with manager_clusters(base_dir, request) as make_managers:

        def make(**kwargs: Any) -> Fleet:
            fleet = Fleet(make_managers(**kwargs), base_dir / f"fleet{len(made)}")
            fleet.base_dir.mkdir(parents=True, exist_ok=True)
            made.append(fleet)
            return fleet

        try:
            yield make
        finally:
            failed = any(
                getattr(getattr(request.node, f"rep_{when}", None), "failed", False)
                for when in ("setup", "call")
            )
            for fleet in made:
                if failed:
                    print("\n==== worker logs ====\n" + "\n".join(w.log_tail(60) for w in fleet.workers))
                fleet.close()


@contextlib.contextmanager
def netns_fleet(
    hosts: int, ports: tuple[int, int, int], base_dir: Path, request: pytest.FixtureRequest
) -> Iterator[tuple[NetnsLab, Fleet]]:
    """A NetnsLab of `hosts` namespaces and a Fleet whose nodes live in them (skipped without network
    namespaces, failed in CI); the lab must leave nothing behind."""
    reason = unavailable_reason()
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"CI must be able to make network namespaces: {reason}")
        pytest.skip(f"needs network namespaces: {reason}")
    with NetnsLab(hosts) as lab:
        with fleets(base_dir, request) as make:
            yield lab, make(hosts=lab.hosts(ports))
    assert not lab.leftovers(), f"the lab left things behind: {lab.leftovers()}"


def env_value(pid: int, key: str) -> str:
    """The value of `key` in process `pid`'s environment ("" if it has none)."""
    with open(f"/proc/{pid}/environ", "rb") as f:
        for item in f.read().split(b"\0"):
            k, _, v = item.decode(errors="replace").partition("=")
            if k == key:
                return v
    return ""
