"""Scenario `rss`: idle memory of a manager and a worker, as an edge box would run them.

Three managers (`--manager-only`, default timers) and one worker (the Docker runtime when an engine
answers, the process runtime otherwise) run a 2-replica service; after `settle_s` with no client
activity, each daemon's resident set (VmRSS from /proc, the daemon process alone: task processes and
containers are the workload, not Warren) is sampled `samples` times, `interval_s` apart. The rows give
the largest sample of any manager (leader or follower) and of the worker.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from benches.workers_bench import fleet
from tests.integration.managers import DaemonProc
from tests.integration.workers import docker_unavailable_reason

EVENT = "VmRSS of the daemon process after {settle:g} s idle (largest of {n} samples, {interval:g} s apart)"


@dataclass(frozen=True, slots=True)
class FootprintParams:
    managers: int = 3  # cluster size; managers
    replicas: int = 2  # tasks of the idle service; replicas
    settle_s: float = 10.0  # idle time before sampling; seconds
    samples: int = 10  # readings per daemon; samples
    interval_s: float = 1.0  # between readings; seconds

    @classmethod
    def smoke(cls) -> FootprintParams:
        return cls(managers=1, settle_s=1.0, samples=2, interval_s=0.5)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def rss_mb(pid: int) -> float:
    """The resident set of `pid` in MiB (VmRSS: anonymous, file-backed and shared pages it maps)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise ProcessLookupError(f"no VmRSS for pid {pid}")


def run(base_dir: Path, params: FootprintParams) -> dict[str, Any]:
    runtime = "process" if docker_unavailable_reason() else "docker"
    with fleet(base_dir / "footprint", managers=params.managers) as f:
        worker = f.add_worker(runtime)
        if runtime == "docker":
            spec: dict[str, Any] = {"image": "warren-busybox:latest", "command": ["sleep", "1000000"]}
        else:
            spec = {"image": "local", "driver": "process", "command": ["sleep", "1000000"]}
        f.create("idle", replicas=params.replicas, stop_timeout_s=1, **spec)
        f.wait_running("idle", params.replicas)
        time.sleep(params.settle_s)  # the measured condition is "idle for this long": nothing to await
        daemons: list[DaemonProc] = [*f.managers.live(), worker]
        readings: dict[str, list[float]] = {d.label: [] for d in daemons}
        for i in range(params.samples):
            if i:
                time.sleep(params.interval_s)
            for d in daemons:
                assert d.pid is not None
                readings[d.label].append(round(rss_mb(d.pid), 2))
        leader = f.leader.label
    managers = {label: r for label, r in readings.items() if label != worker.label}
    top = max(managers, key=lambda label: max(managers[label]))
    event = EVENT.format(settle=params.settle_s, n=params.samples, interval=params.interval_s)
    n = params.managers
    rows = [
        _row(
            "rss/manager",
            f"Warren manager, largest of {n} ({top}{', the leader' if top == leader else ''}), "
            f"--manager-only, 1 worker, {params.replicas}-replica service",
            event,
            managers[top],
        ),
        _row(
            "rss/worker",
            f"Warren worker, {runtime} runtime, {params.replicas} tasks",
            event,
            readings[worker.label],
        ),
    ]
    results = {"runtime": runtime, "leader": leader, "rss_mb": readings}
    return {"status": "ok", "error": None, "config": params.as_dict(), "results": results, "rows": rows}


def _row(key: str, what: str, event: str, samples_mb: list[float]) -> dict[str, Any]:
    return {
        "scenario": "rss",
        "key": key,
        "what": what,
        "event": event,
        "trials": len(samples_mb),
        "value_mb": max(samples_mb),
        "samples_mb": samples_mb,
    }
