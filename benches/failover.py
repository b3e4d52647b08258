"""Scenario `failover`: how long writes are unavailable after kill -9 of the leader of 3 nodes.

Each trial: wait for a stable leader, SIGKILL it, then try a proposal on every survivor every ~5 ms
until one commits; the time from the kill to that first acknowledged commit is the unavailability a
client with perfect retry would see. The victim is then restarted and caught up before the next trial.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from benches.stats import percentile
from tests.integration.cluster import (
    CallTimeout,
    Cluster,
    HarnessError,
    NodeOptions,
    RemoteError,
    WaitTimeout,
)

EVENT = "SIGKILL of the leader → first commit acknowledged by a survivor"
NODES = 3


@dataclass(frozen=True)
class FailoverParams:
    trials: int = 20  # kills; trials
    poll_s: float = 0.005  # pause between rounds of proposal attempts; seconds
    give_up_s: float = 10.0  # a trial with no commit by then is recorded as failed; seconds

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def run(base_dir: Path, params: FailoverParams, options: NodeOptions) -> dict[str, Any]:
    trials: list[dict[str, Any]] = []
    error = None
    with Cluster(base_dir / "failover", options) as cluster:
        try:
            cluster.start(NODES)
            for i in range(params.trials):
                trials.append(trial(cluster, i, params))
        except (HarnessError, RemoteError, WaitTimeout) as exc:
            error = f"{type(exc).__name__}: {exc}"
    times = sorted(t["unavailable_s"] for t in trials if t.get("unavailable_s") is not None)
    failed = sum(1 for t in trials if t.get("unavailable_s") is None)
    summary: dict[str, Any] = {"trials": len(trials), "failed_trials": failed}
    if times:
        summary.update(
            {
                "p50_ms": 1000 * percentile(times, 50),
                "p90_ms": 1000 * percentile(times, 90),
                "p99_ms": 1000 * percentile(times, 99),
                "max_ms": 1000 * times[-1],
                "min_ms": 1000 * times[0],
            }
        )
    timeouts = f"{options.election_min_ms}-{options.election_max_ms}"
    row: dict[str, Any] = {
        "scenario": "failover",
        "key": f"failover/{NODES}",
        "what": f"warren_raft, {NODES} nodes, election timeout {timeouts} ms",
        "event": EVENT,
        "trials": len(trials),
        **{k: summary.get(k) for k in ("p50_ms", "p90_ms", "p99_ms", "max_ms")},
    }
    if failed:
        row["note"] = f"{failed} trial(s) without a commit within {params.give_up_s}s (max excludes them)"
    if error:
        row["error"] = error
    return {
        "status": "ok" if error is None else "error",
        "error": error,
        "config": {"nodes": NODES, **params.as_dict(), "node_options": asdict(options)},
        "results": {"summary": summary, "trials": trials},
        "rows": [row],
    }


def trial(cluster: Cluster, i: int, params: FailoverParams) -> dict[str, Any]:
    victim = cluster.leader(timeout=15)
    old_term = victim.metrics()["term"]
    survivors = [p for p in cluster.live() if p is not victim]
    attempts = 0
    winner = None
    t0 = time.perf_counter()
    victim.kill()
    while time.perf_counter() - t0 < params.give_up_s and winner is None:
        for p in survivors:
            attempts += 1
            try:
                p.call("propose", data=f"failover-{i}", timeout=params.give_up_s)
            except (RemoteError, CallTimeout):
                continue
            winner = p
            break
        else:
            time.sleep(params.poll_s)
    unavailable = time.perf_counter() - t0 if winner is not None else None
    result: dict[str, Any] = {
        "trial": i,
        "killed": victim.id,
        "old_term": old_term,
        "unavailable_s": unavailable,
        "new_leader": winner.id if winner else None,
        "attempts": attempts,
    }
    if winner is not None:
        result["new_term"] = winner.metrics()["term"]
    # Bring the victim back and let it catch up, so every trial starts from three healthy nodes.
    victim.restart()
    cluster.leader(timeout=15)
    cluster.wait_converged(timeout=30)
    return result
