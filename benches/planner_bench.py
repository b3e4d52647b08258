"""The leader's reconcile pass on a large converged state (issue 18: 10,000 tasks, nothing to change,
≤ 20 ms), in process: no cluster, no network.

A real Store in the scenario's work dir is filled through real commands (warren.store.commands, applied
by Store.apply through the wire codec, as Raft would): `nodes` process-capable workers, `services`
replicated services of `tasks / services` replicas each, every task placed by the planner's own passes
and reported running. Then the pass is timed exactly as the leader's loop calls it (the orchestrator's
planner: `warren.reconciler.planner.Planner`, kept across passes with its service cache):

- `planner/idle`: nothing changed since the last pass (the full-pass safety net, a wake_at);
- `planner/one-task`: one task changed since the last pass (it exited: the pass plans its replacement);
  the replacement is applied and reported running before the next trial, untimed;
- `planner/full`: the same state planned from scratch (no cache, no memory of the last pass), the pass
  as it was before issue 18, for the ratio.

A cProfile of further `one-task` passes (not the timed ones) is written to the work dir, and its top
functions (by cumulative time) go into the result, for the breakdown.
"""

from __future__ import annotations

import cProfile
import io
import pstats
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from benches.stats import trial_row
from warren.config import OrchestratorSettings
from warren.reconciler import planner
from warren.spec import taskstate
from warren.spec.service import ServiceSpec, decode
from warren.store import commands as c
from warren.store.machine import Store

T0 = 1_800_000_000.0
TOKEN_HASH = "ab" * 32
EVENT_IDLE = "plan() called with nothing changed since the last pass → plan returned"
EVENT_ONE = "plan() called after one task exited → plan (its replacement) returned"
EVENT_FULL = "plan() from scratch (no cache, no previous pass) → plan returned"


@dataclass(frozen=True, slots=True)
class PlannerParams:
    nodes: int = 20
    services: int = 10
    tasks: int = 10_000  # in all, spread evenly over the services
    passes: int = 200  # timed passes per row
    full_passes: int = 20  # timed from-scratch passes (slow: fewer)
    profiled_passes: int = 20  # one-task passes run under cProfile, not timed

    @classmethod
    def smoke(cls) -> PlannerParams:
        return cls(nodes=3, services=2, tasks=200, passes=10, full_passes=3, profiled_passes=2)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class _Cluster:
    """A Store fed through the wire codec, with a clock and the workers' status reports."""

    def __init__(self, data_dir: Path) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        self.store = Store(str(data_dir))
        self.store.restore(None)
        self.index = 0
        self.now = T0
        self._ids = 0

    def new_id(self) -> str:
        self._ids += 1
        return f"t-{self._ids:010x}"

    def apply(self, *cmds: c.Command) -> None:
        entries = []
        for cmd in cmds:
            self.index += 1
            entries.append((self.index, 1, c.encode(cmd)))
        for cmd, answer in zip(cmds, self.store.apply(entries), strict=True):
            if b'"error"' in answer[:10]:
                raise RuntimeError(f"{cmd.OP} refused: {answer.decode()}")

    def run_all(self) -> int:
        """Every placed task not final moves on (assigned → running); how many reports."""
        rows = self.store.conn.execute(
            f"SELECT id, node, state, desired_state FROM tasks WHERE node IS NOT NULL AND state NOT IN"
            f" {taskstate.TERMINAL_SQL}"
        ).fetchall()
        updates = []
        for row in rows:
            if row["desired_state"] == "shutdown":
                updates.append(c.TaskStatus(row["id"], taskstate.SHUTDOWN, "stopped", self.now, row["node"]))
            elif row["state"] != taskstate.RUNNING:
                updates.append(c.TaskStatus(row["id"], taskstate.RUNNING, "started", self.now, row["node"]))
        for i in range(0, len(updates), 1000):
            self.apply(c.SetTaskStatuses(updates[i : i + 1000]))
        return len(updates)


def _fill(cluster: _Cluster, params: PlannerParams, settings: OrchestratorSettings) -> planner.Planner:
    cluster.apply(
        c.InitCluster(
            "cluster-1", cluster.now, c.ManagerRecord("manager-1", 1, "127.0.0.1:1", "127.0.0.1:2")
        ),
        c.CreateToken("tok-1", "worker", TOKEN_HASH, cluster.now, cluster.now + 10**9, False),
    )
    for n in range(params.nodes):
        resources = {"drivers": ["process"], "cpus": 64.0, "memory": 256 * 1024**3}
        cluster.apply(
            c.RegisterWorker(f"w{n:03d}", TOKEN_HASH, "cd" * 32, "127.0.0.9", {}, resources, cluster.now)
        )
    per_service = max(1, params.tasks // params.services)
    for s in range(params.services):
        spec = {
            "image": "local",
            "driver": "process",
            "command": ["sleep", "1000000"],
            "replicas": per_service,
        }
        cluster.apply(c.CreateService(f"svc-{s:03d}", f"svc-{s:03d}", decode(ServiceSpec, spec), cluster.now))
    the_planner = planner.Planner()
    for _ in range(20):  # converge: create and place, then every task reported running
        cluster.now += 1.0
        p = the_planner(cluster.store.conn, cluster.now, settings, cluster.new_id)
        if p.commands:
            cluster.apply(*p.commands)
        if not cluster.run_all() and not p.commands:
            return the_planner
    raise RuntimeError("the benchmark's cluster did not converge")


def _time(fn: Any, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def _one_task(
    cluster: _Cluster,
    the_planner: planner.Planner,
    settings: OrchestratorSettings,
    i: int,
    profile: cProfile.Profile | None,
) -> float:
    """One task exits; the pass that plans its replacement, timed (and profiled if asked). Its plan is
    then applied and the replacement reported running, and the planner sees that state once."""
    conn = cluster.store.conn
    running = conn.execute("SELECT id, node FROM tasks WHERE state = 'running' ORDER BY id").fetchall()
    victim, node = running[(i * 7919) % len(running)]
    cluster.now += 1.0
    exited = c.TaskStatus(victim, taskstate.FAILED, "exited with status 1", cluster.now, node, exit_code=1)
    cluster.apply(c.SetTaskStatuses([exited]))
    cluster.now += 10.0  # past the restart delay
    t0 = time.perf_counter()
    if profile is not None:
        profile.enable()
    p = the_planner(conn, cluster.now, settings, cluster.new_id)
    if profile is not None:
        profile.disable()
    took = time.perf_counter() - t0
    if not p.commands:
        raise RuntimeError("a task that exited was not replaced")
    cluster.apply(*p.commands)
    cluster.run_all()
    the_planner(conn, cluster.now, settings, cluster.new_id)
    return took


def run(work_dir: Path, params: PlannerParams) -> dict[str, Any]:
    settings = OrchestratorSettings()
    cluster = _Cluster(work_dir / "store")
    try:
        the_planner = _fill(cluster, params, settings)
        conn = cluster.store.conn
        count = conn.execute("SELECT count(*) FROM tasks WHERE state = 'running'").fetchone()[0]

        def idle() -> None:
            cluster.now += 0.001
            if the_planner(conn, cluster.now, settings, cluster.new_id).commands:
                raise RuntimeError("a converged state planned commands")

        idle_s = _time(idle, params.passes)

        profile = cProfile.Profile()
        one_s = [_one_task(cluster, the_planner, settings, i, None) for i in range(params.passes)]
        for i in range(params.profiled_passes):  # apart: the profiler slows what it watches
            _one_task(cluster, the_planner, settings, params.passes + i, profile)
        profile.dump_stats(str(work_dir / "one-task.prof"))
        text = io.StringIO()
        pstats.Stats(profile, stream=text).sort_stats("cumulative").print_stats(25)

        def full() -> None:
            cluster.now += 0.001
            planner.plan(conn, cluster.now, settings, cluster.new_id)

        full_s = _time(full, params.full_passes)
    finally:
        cluster.store.close()
    what = f"{count:,} running tasks, {params.services} services, {params.nodes} nodes"
    rows = [
        trial_row("planner", "planner/idle", f"reconcile pass, nothing changed; {what}", EVENT_IDLE, idle_s),
        trial_row(
            "planner", "planner/one-task", f"reconcile pass, one task exited; {what}", EVENT_ONE, one_s
        ),
        trial_row("planner", "planner/full", f"reconcile pass from scratch; {what}", EVENT_FULL, full_s),
    ]
    results = {"running_tasks": count, "profile_one_task": text.getvalue()}
    return {"status": "ok", "error": None, "config": params.as_dict(), "results": results, "rows": rows}
