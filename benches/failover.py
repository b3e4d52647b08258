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

from benches.stats import summarize_ms, trial_row
from tests.integration.cluster import (
    CallTimeout,
    Cluster,
    HarnessError,
    NodeOptions,
    RemoteError,
)
from warren.testing.wait import WaitTimeout

EVENT = "SIGKILL of the leader → first commit acknowledged by a survivor"
NODES = 3


@dataclass(frozen=True)
class FailoverParams:
    trials: int = 20  # kills; trials
    poll_s: float = 0.005  # pause between rounds of proposal attempts; seconds
    give_up_s: float = 10.0  # a trial with no commit by then is recorded as failed; seconds
    max_wall_s: float = 600.0  # stop starting trials after this long (recorded); seconds

    @classmethod
    def smoke(cls) -> FailoverParams:
        """Two kills: keeps the scenario working in CI (numbers not judged)."""
        return cls(trials=2, max_wall_s=60.0)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def run(base_dir: Path, params: FailoverParams, options: NodeOptions) -> dict[str, Any]:
    trials: list[dict[str, Any]] = []
    error = None
    t_start = time.monotonic()
    with Cluster(base_dir / "failover", options) as cluster:
        try:
            cluster.start(NODES)
            for i in range(params.trials):
                if time.monotonic() - t_start > params.max_wall_s:
                    error = f"stopped after {len(trials)} trials: over the {params.max_wall_s:g} s budget"
                    break
                trials.append(trial(cluster, i, params))
        except (HarnessError, RemoteError, WaitTimeout) as exc:
            error = f"{type(exc).__name__}: {exc}"
    times = [t["unavailable_s"] for t in trials if t.get("unavailable_s") is not None]
    failures = [f"no commit within {params.give_up_s:g} s" for t in trials if t.get("unavailable_s") is None]
    summary = {"trials": len(trials), "failed_trials": len(failures), **summarize_ms(times)}
    timeouts = f"{options.election_min_ms}-{options.election_max_ms}"
    row = trial_row(
        "failover",
        f"failover/{NODES}",
        f"warren_raft, {NODES} nodes, election timeout {timeouts} ms",
        EVENT,
        times,
        failures,
    )
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
