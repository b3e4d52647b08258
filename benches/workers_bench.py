"""Task recovery and scheduling on real workers (the issue-4 numbers), with default timers.

- containers: one manager (manager-only) and one Docker worker on the same engine Swarm uses;
  container crash → replacement running, and service create → N replicas running, both read from the
  engine's `start` events exactly as for Swarm (benches/containers.py, benches/swarm_peer.py);
- worker_failure: one manager and three process-runtime workers; SIGKILL of the agent of the worker
  with the most tasks, and of its task processes (a machine crash) → every task of the service running
  again, none on the dead worker (read from the API, polled every 20 ms);
- schedule: one manager and four process-runtime workers; service create with 250, 500, 1,000, 2,000,
  then 4,000 replicas → all running (the service's running count from the API, polled every 20 ms),
  each row with its time per replica (issue 18: flat from 250 to 4,000, within ±30 %).

The clusters are tests/integration's (`Fleet`); their admin certificate is in the scenario's own config
dir (`WARREN_CONFIG_DIR`, set by benches/harness.py for the scenario's run), where the API calls here
find it. Each call opens its own HTTPS connection, as before TLS each opened its own HTTP connection
(these are polls and control requests, not the measured latency).
"""

from __future__ import annotations

import contextlib
import ssl
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx

from benches.containers import crash_trials, create_trial, wait_running
from benches.managers import HarnessError
from benches.swarm_peer import CRASH_EVENT, CREATE_EVENT, ContainerParams, summary_row
from tests.integration.managers import ManagerCluster
from tests.integration.workers import Fleet, docker_client, remove_containers
from warren.pki import userconfig
from warren.runtime import PROCESS_TASKS_DIR

POLL_S = 0.02
WORKER_FAILURE_EVENT = "SIGKILL of a worker (agent and its tasks) → all its tasks running on other workers"
SCHEDULE_EVENT = "service create API call → every replica running (the service's running count, API)"


@dataclass(frozen=True, slots=True)
class WorkerParams:
    failure_trials: int = 5
    failure_workers: int = 3
    failure_replicas: int = 6
    # Service sizes, each its own row (issue 18's table: time per replica flat from 250 to 4,000); replicas.
    schedule_replicas: tuple[int, ...] = (250, 500, 1000, 2000, 4000)
    schedule_workers: int = 4
    schedule_trials: int = 3
    give_up_s: float = 120.0

    @classmethod
    def smoke(cls) -> WorkerParams:
        return cls(failure_trials=1, failure_replicas=2, schedule_replicas=(20,), schedule_trials=1)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@contextlib.contextmanager
def fleet(base_dir: Path, managers: int = 1) -> Iterator[Fleet]:
    """`managers` managers with default timers, no local worker; torn down whatever happens."""
    f = Fleet(ManagerCluster(base_dir, extra_flags=["--manager-only"]), base_dir)
    try:
        f.start_managers(managers)
        yield f
    finally:
        try:
            f.close()
        finally:
            f.managers.close()


# TLS contexts by (config dir, manager address): built once (loading the certificate costs more than a
# poll's handshake), per scenario since each has a config dir of its own.
_TLS: dict[tuple[str, str], ssl.SSLContext] = {}


def _client(addr: str) -> httpx.Client:
    """An HTTPS client of the manager at `addr` with its cluster's admin certificate (one connection)."""
    key = (userconfig.config_dir(), addr)
    tls = _TLS.get(key)
    if tls is None:
        creds = userconfig.find([addr])
        if creds is None:
            raise HarnessError(f"no admin certificate for the cluster at {addr} in {key[0]}")
        tls = _TLS[key] = creds.context()
    return httpx.Client(base_url=f"https://{addr}", timeout=30, verify=tls)


def _post(addr: str, method: str, path: str, body: Any = None) -> Any:
    with _client(addr) as client:
        response = client.request(method, path, json=body)
        response.raise_for_status()
        return response.json()


def _tasks(addr: str, service: str) -> list[dict[str, Any]]:
    with _client(addr) as client:
        response = client.get(f"/v1/services/{service}/tasks")
        response.raise_for_status()
        result: list[dict[str, Any]] = response.json()
        return result


def _running(tasks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [t for t in tasks if t["state"] == "running" and t["desired_state"] == "running"]


def _wait_all_running(
    addr: str, service: str, count: int, deadline: float, avoid: str | None = None
) -> float | None:
    """When `count` tasks of `service` run (none on `avoid`), by the monotonic clock; None at deadline."""
    while time.monotonic() < deadline:
        running = _running(_tasks(addr, service))
        if len(running) == count and (avoid is None or all(t["node"] != avoid for t in running)):
            return time.monotonic()
        time.sleep(POLL_S)
    return None


def containers(base_dir: Path, params: ContainerParams) -> dict[str, Any]:
    client = docker_client()
    rows: list[dict[str, Any]] = []
    results: dict[str, Any] = {}
    with fleet(base_dir / "containers") as f:
        f.add_worker("docker")
        addr = f.addr
        cluster_id = f.managers.managers[0].info()["cluster_id"]
        sleep = {"image": params.image, "command": ["sleep", "1000000"], "stop_timeout_s": 1}
        _post(addr, "POST", "/v1/services", {"name": "crash", "replicas": 1, **sleep})
        label = "warren.service.name=crash"
        samples = crash_trials(
            client, label, params.crash_trials, params.give_up_s,
            settle=lambda: wait_running(client, label, 1, params.give_up_s),
            min_uptime_s=params.min_uptime_s,
        )  # fmt: skip
        results["crash"] = samples
        what = "Warren, docker runtime, default restart policy (no delay)"
        rows.append(summary_row("containers", "containers/crash", what, CRASH_EVENT, samples))
        _post(addr, "DELETE", "/v1/services/crash")

        samples = []
        for trial in range(params.create_trials):
            name = f"create-{trial}"
            body = {"name": name, "replicas": params.create_replicas, **sleep}
            label = f"warren.service.name={name}"
            samples.append(
                create_trial(
                    client, label, params.create_replicas, params.give_up_s,
                    lambda body=body: _post(addr, "POST", "/v1/services", body),  # type: ignore[misc]
                )
            )  # fmt: skip
            _post(addr, "DELETE", f"/v1/services/{name}")
        results["create"] = samples
        what = f"Warren, docker runtime, {params.create_replicas} replicas, one worker"
        key = f"containers/create-{params.create_replicas}"
        rows.append(summary_row("containers", key, what, CREATE_EVENT, samples))
        remove_containers(cluster_id)
    return {"status": "ok", "error": None, "config": params.as_dict(), "results": results, "rows": rows}


def worker_failure(base_dir: Path, params: WorkerParams) -> dict[str, Any]:
    samples: list[dict[str, Any]] = []
    with fleet(base_dir / "worker-failure") as f:
        workers = [f.add_worker("process") for _ in range(params.failure_workers)]
        addr = f.addr
        spec = {"image": "local", "driver": "process", "command": ["sleep", "1000000"], "stop_timeout_s": 1}
        _post(addr, "POST", "/v1/services", {"name": "steady", "replicas": params.failure_replicas, **spec})
        for _ in range(params.failure_trials):
            deadline = time.monotonic() + params.give_up_s
            ready = _wait_all_running(addr, "steady", params.failure_replicas, deadline)
            if ready is None:
                samples.append({"ok": False, "error": "the service did not settle before the trial"})
                break
            by_node: dict[str, int] = {}
            for t in _running(_tasks(addr, "steady")):
                by_node[t["node"]] = by_node.get(t["node"], 0) + 1
            victim = max(workers, key=lambda w: by_node.get(w.name, 0))
            moved = by_node.get(victim.name, 0)
            t0 = time.monotonic()
            victim.kill()
            victim.kill_tasks()
            done = _wait_all_running(
                addr, "steady", params.failure_replicas, t0 + params.give_up_s, avoid=victim.name
            )
            if done is None:
                error = f"tasks not running elsewhere within {params.give_up_s:g} s"
                samples.append({"ok": False, "error": error})
            else:
                samples.append({"ok": True, "seconds": done - t0, "tasks_moved": moved})
            victim.start()  # resumes with its identity: back to ready for the next trial
            victim.wait_ready(addr)
    what = (
        f"Warren, {params.failure_workers} process-runtime workers, {params.failure_replicas} replicas, "
        "default heartbeat (1 s) and grace (5 s)"
    )
    row = summary_row("worker_failure", "worker_failure/process", what, WORKER_FAILURE_EVENT, samples)
    return {"status": "ok", "error": None, "config": params.as_dict(), "results": samples, "rows": [row]}


def schedule(base_dir: Path, params: WorkerParams) -> dict[str, Any]:
    samples: dict[int, list[dict[str, Any]]] = {n: [] for n in params.schedule_replicas}
    with fleet(base_dir / "schedule") as f:
        for _ in range(params.schedule_workers):
            f.add_worker("process")
        addr = f.addr
        spec = {"image": "local", "driver": "process", "command": ["sleep", "1000000"], "stop_timeout_s": 1}
        for replicas in params.schedule_replicas:
            for trial in range(params.schedule_trials):
                name = f"many-{replicas}-{trial}"
                t0 = time.monotonic()
                _post(addr, "POST", "/v1/services", {"name": name, "replicas": replicas, **spec})
                done = _wait_replicas_running(addr, name, replicas, t0 + params.give_up_s)
                if done is None:
                    error = f"not all running within {params.give_up_s:g} s"
                    samples[replicas].append({"ok": False, "error": error})
                else:
                    samples[replicas].append({"ok": True, "seconds": done - t0})
                _post(addr, "DELETE", f"/v1/services/{name}")
                # Wait until the workers stopped and removed them all, so the next trial starts from an
                # idle cluster (a worker still removing the last service's tasks made the next create
                # up to 3× slower).
                deadline = time.monotonic() + params.give_up_s
                while not _torn_down(f) and time.monotonic() < deadline:
                    time.sleep(0.1)
    rows = [
        _per_replica(
            summary_row(
                "schedule",
                f"schedule/{n}",
                f"Warren, {n} replicas on {params.schedule_workers} process-runtime workers",
                SCHEDULE_EVENT,
                trials,
            ),
            n,
        )
        for n, trials in samples.items()
    ]
    results = {str(n): trials for n, trials in samples.items()}
    return {"status": "ok", "error": None, "config": params.as_dict(), "results": results, "rows": rows}


def _torn_down(f: Fleet) -> bool:
    """No task process left, and no task directory: the process runtime removes a task's directory
    last, once its process is gone."""
    if any(w.task_pids() for w in f.workers):
        return False
    for w in f.workers:
        with contextlib.suppress(FileNotFoundError):
            if any(Path(w.data_dir, PROCESS_TASKS_DIR).iterdir()):
                return False
    return True


def _per_replica(row: dict[str, Any], replicas: int) -> dict[str, Any]:
    """The row with its time per replica (p50 and worst trial ÷ replicas; issue 18 asks it to stay
    flat as the service grows), also said in its note."""
    if row.get("p50_ms") is None:
        return row
    row["per_replica_ms"] = round(row["p50_ms"] / replicas, 4)
    row["per_replica_max_ms"] = round(row["max_ms"] / replicas, 4)
    said = f"{row['per_replica_ms']:.2f} ms per replica (p50)"
    row["note"] = f"{row['note']}; {said}" if row.get("note") else said
    return row


def _wait_replicas_running(addr: str, service: str, count: int, deadline: float) -> float | None:
    """When the service reports `count` replicas running (one small read, however many tasks)."""
    while time.monotonic() < deadline:
        if _post(addr, "GET", f"/v1/services/{service}")["replicas_running"] == count:
            return time.monotonic()
        time.sleep(POLL_S)
    return None
