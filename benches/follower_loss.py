"""Scenario `follower_loss`: what losing a follower costs the writes, and how long its return takes.

On one 3-manager cluster formed through the CLI (default Raft timers), each trial:

1. A client writes continuously through the leader (`service_write`: PATCH of a service; one keep-alive
   TLS connection, sequential), noting when each write is acknowledged. After `before_s` of acknowledged
   writes, the harness sends SIGKILL to a follower's process group (the followers take turns) and the
   client goes on for `after_s`. `follower_loss/gap` is the longest time without an acknowledgement in the
   window [kill - before_s, kill + after_s]: with one follower left the leader still has its majority, so
   this is the stall a follower's death causes, if any (the longest gap before the kill is recorded beside
   it as the baseline).
2. The harness reads the leader's commit index, then restarts the follower with its own command and
   polls its `/v1/ready` every `ready_poll_s`; `follower_loss/rejoin` is the time from the restart to
   the first answer that says ready with an applied index at or above that commit index (process
   start-up, opening its state, catching up with the log it missed).
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from benches.client_failover import longest_gap
from benches.manager_api import service_write, written
from benches.managers import HarnessError, HttpError, ManagerCluster, ManagerProc
from benches.stats import summarize_ms, trial_row
from warren.testing.wait import WaitTimeout, eventually

SCENARIO = "follower_loss"
MANAGERS = 3
WHAT = f"Warren API, {MANAGERS} managers, default Raft timers; 1 client writing sequentially via the leader"


@dataclass(frozen=True)
class FollowerLossParams:
    trials: int = 10  # follower kills; trials
    before_s: float = 1.0  # the window starts this long before the kill; seconds
    after_s: float = 2.0  # and ends this long after it; seconds
    write_timeout_s: float = (
        5.0  # a write without an answer by then fails (its wait is part of a gap); seconds
    )
    ready_poll_s: float = 0.005  # pause between /v1/ready polls of the restarted follower; seconds
    give_up_s: float = 60.0  # a follower not caught up by then is a failed rejoin trial; seconds
    max_wall_s: float = 600.0  # stop starting trials after this long (recorded); seconds

    @classmethod
    def smoke(cls) -> FollowerLossParams:
        """One trial: keeps the scenario working in CI (numbers not judged)."""
        return cls(trials=1, max_wall_s=60.0)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Writer(threading.Thread):
    """Writes through one manager until stopped; `acks` holds the perf_counter() of each acknowledgement."""

    def __init__(self, via: ManagerProc, timeout_s: float, first: int) -> None:
        super().__init__(name="follower-loss-writer", daemon=True)
        self.conn = via.http(timeout_s)
        self.make = service_write("l-", via)
        self.n = first
        self.acks: list[float] = []
        self.errors: list[tuple[float, str]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                method, path, body = self.make(self.n)
                self.n += 1
                try:
                    status, data = self.conn.request(method, path, body)
                except HttpError as exc:
                    self.errors.append((time.perf_counter(), str(exc)))
                    continue
                if written(status, data):
                    self.acks.append(time.perf_counter())
                else:
                    self.errors.append((time.perf_counter(), f"HTTP {status}: {data[:160]!r}"))
        finally:
            self.conn.close()


def gap_trial(cluster: ManagerCluster, i: int, params: FollowerLossParams, first: int) -> dict[str, Any]:
    """Kill a follower under load; the gap record. The follower is left dead (see rejoin_trial)."""
    leader = cluster.wait_stable()
    followers = [m for m in cluster.managers if m is not leader]
    victim = followers[i % len(followers)]
    writer = Writer(leader, params.write_timeout_s, first)
    writer.start()
    try:
        eventually(
            lambda: writer.acks and time.perf_counter() - writer.acks[0] >= params.before_s,
            params.before_s + 10.0,
            "a second of acknowledged writes through the leader",
            poll_s=0.005,
            not_yet=(),
        )
        t_kill = time.perf_counter()
        victim.kill()
        time.sleep(max(0.0, t_kill + params.after_s - time.perf_counter()))  # the window's fixed length
    finally:
        writer.stop.set()
        writer.conn.abort()
        writer.join(params.write_timeout_s + 5.0)
    start, end = t_kill - params.before_s, t_kill + params.after_s
    gap, began = longest_gap(writer.acks, start, end)
    baseline, _ = longest_gap(writer.acks, start, t_kill)
    errors = [(t, e) for t, e in writer.errors if start <= t <= end]
    return {
        "trial": i,
        "victim": victim.label,
        "leader": leader.label,
        "gap_s": gap,
        "gap_began_s": began - t_kill,  # relative to the kill
        "gap_before_kill_s": baseline,
        "acks_in_window": sum(1 for t in writer.acks if start < t < end),
        "errors_in_window": len(errors),
        "first_errors": [e for _, e in errors[:3]],
        "next": writer.n,
    }


def rejoin_trial(cluster: ManagerCluster, victim: ManagerProc, params: FollowerLossParams) -> dict[str, Any]:
    """Restart a killed follower; the time until it is ready and has applied the leader's commit index."""
    leader = cluster.wait_stable()
    state = leader.raft_state()
    if state is None or state.get("commit_index") is None:
        raise HarnessError(f"{leader.label} did not report its commit index")
    target = int(state["commit_index"])
    t0 = time.perf_counter()
    victim.start()
    rejoin = None
    applied = None
    while time.perf_counter() - t0 < params.give_up_s:
        if not victim.alive:
            raise HarnessError(victim.exit_note())
        doc = victim.raft_state(timeout_s=1.0)
        if doc is not None and doc.get("ready") and int(doc.get("applied_index") or 0) >= target:
            rejoin = time.perf_counter() - t0
            applied = doc["applied_index"]
            break
        time.sleep(params.ready_poll_s)
    record = {"rejoin_s": rejoin, "commit_at_restart": target, "applied_when_ready": applied}
    cluster.wait_member(victim)
    record["leader_after"] = cluster.wait_stable().label
    return record


def run(work_dir: Path, params: FollowerLossParams) -> dict[str, Any]:
    loadavg_before = os.getloadavg()
    trials: list[dict[str, Any]] = []
    error = None
    t_start = time.monotonic()
    with ManagerCluster(work_dir / SCENARIO) as cluster:
        try:
            cluster.start(MANAGERS)
            n = 0
            for i in range(params.trials):
                if time.monotonic() - t_start > params.max_wall_s:
                    error = f"stopped after {len(trials)} trials: over the {params.max_wall_s:g} s budget"
                    break
                record = gap_trial(cluster, i, params, n)
                n = record.pop("next")
                trials.append(record)
                victim = next(m for m in cluster.managers if m.label == record["victim"])
                record.update(rejoin_trial(cluster, victim, params))
                record["leader_changed"] = record["leader_after"] != record["leader"]
        except (HarnessError, WaitTimeout) as exc:
            error = f"{type(exc).__name__}: {exc}"
    return {
        "status": "ok" if error is None else "error",
        "error": error,
        "config": {"managers": MANAGERS, **params.as_dict()},
        "results": {
            "trials": trials,
            "loadavg": {"before": loadavg_before, "after": os.getloadavg()},
        },
        "rows": rows(trials, params, error),
    }


def rows(trials: list[dict[str, Any]], params: FollowerLossParams, error: str | None) -> list[dict[str, Any]]:
    window = f"window [kill - {params.before_s:g} s, kill + {params.after_s:g} s]"
    gap = trial_row(
        SCENARIO,
        f"{SCENARIO}/gap",
        f"{WHAT}; {window}",
        "SIGKILL of a follower → longest gap between acknowledged writes via the leader",
        [t["gap_s"] for t in trials],
    )
    gap["baseline_p50_ms"] = summarize_ms([t["gap_before_kill_s"] for t in trials]).get("p50_ms")
    changed = sum(1 for t in trials if t.get("leader_changed"))
    errors = sum(t["errors_in_window"] for t in trials)
    notes = [
        f"baseline = longest gap in the second before the kill (p50 {gap['baseline_p50_ms'] or 0:.1f} ms)"
    ]
    if errors:
        notes.append(f"{errors} failed write(s) in the windows")
    if changed:
        notes.append(f"the leader changed in {changed} trial(s)")
    gap["note"] = "; ".join(notes)
    done = [t for t in trials if "rejoin_s" in t]
    rejoin = trial_row(
        SCENARIO,
        f"{SCENARIO}/rejoin",
        WHAT,
        "restart of the killed follower → it reports ready with applied index ≥ the leader's commit index"
        " read at the restart",
        [t["rejoin_s"] for t in done if t["rejoin_s"] is not None],
        [f"not caught up within {params.give_up_s:g} s" for t in done if t["rejoin_s"] is None],
    )
    for row in (gap, rejoin):
        if error:
            row["error"] = error
    return [gap, rejoin]
