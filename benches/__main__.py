"""`python -m benches [--only NAME ...] [--trials N] [--quick | --smoke] [--out DIR]`: run, record, report.

`python -m benches compare OLD.json NEW.json` compares two runs and flags regressions beyond noise.
`python -m benches --list` names every scenario with what it measures.

Every scenario runs through one harness (benches/harness.py): a time budget each, its own work dir,
everything it started cleaned up on failure, timeout, Ctrl-C or SIGTERM; a failing scenario is recorded
with its reason and the run goes on. A peer that cannot run (etcd not installed, no Docker Engine, no
network namespaces) is recorded as missing with the reason. Results: DIR/bench-<UTC timestamp>.json
(this run: machine, versions, timer settings, every trial's raw numbers), DIR/latest.json and
DIR/latest.md (merged with earlier runs by scenario, with targets, Warren-to-peer ratios and the plots
written next to it), and the table on stdout.

Profiles: the default is the full suite (about 25 minutes on 2 cores); `--quick` cuts trials and
samples for a first look; `--smoke` is the tiny configuration CI runs to keep every scenario working
(its numbers are not judged).
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
import tempfile
from dataclasses import asdict, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benches import (
    bridge,
    cli,
    commit_latency,
    compare,
    etcd_peer,
    failover,
    follower_loss,
    footprint,
    leader_failover,
    manager_api,
    networking,
    partition,
    planner_bench,
    pysyncobj_bench,
    report,
    swarm_peer,
    workers_bench,
)
from benches.harness import Scenario, run_scenario
from benches.managers import sigterm_raises
from tests.integration.cluster import NodeOptions
from warren.config import OrchestratorSettings, RaftSettings

log = logging.getLogger("benches")

DEFAULT_OUT = Path(__file__).resolve().parent / "results"
SMOKE_BUDGET_S = 240.0  # each scenario's budget under --smoke; seconds


def parse_args(argv: list[str]) -> argparse.Namespace:
    summary = __doc__.splitlines()[0] if __doc__ else ""
    p = argparse.ArgumentParser(
        prog="python -m benches",
        description=summary,
        epilog="Also: python -m benches compare OLD.json NEW.json (see its --help).",
    )
    names = scenario_names()
    p.add_argument("--only", nargs="+", choices=names, metavar="NAME", help=", ".join(names))
    p.add_argument("--list", action="store_true", help="list the scenarios and what each measures, then exit")
    p.add_argument("--trials", type=int, help="trials of every timed disruption (failover, crash, ...)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results dir (default benches/results)")
    profile = p.add_mutually_exclusive_group()
    profile.add_argument("--quick", action="store_true", help="fewer trials and samples: a first look")
    profile.add_argument("--smoke", action="store_true", help="the tiny configuration CI runs (not judged)")
    p.add_argument("--keep-data", action="store_true", help="keep node data dirs and logs (path is logged)")
    p.add_argument("--log-level", default="info", help="warren_raft log level in the node processes")
    return p.parse_args(argv)


def scenarios(args: argparse.Namespace) -> list[Scenario]:
    """Every scenario with its parameters for the chosen profile (and --trials)."""
    latency = commit_latency.LatencyParams()
    raft_fail = failover.FailoverParams()
    api = manager_api.ApiLatencyParams()
    leader = leader_failover.LeaderFailoverParams()
    follower = follower_loss.FollowerLossParams()
    cut = partition.PartitionParams()
    etcd_fail = leader_failover.LeaderFailoverParams()
    boxes = swarm_peer.ContainerParams()
    workers = workers_bench.WorkerParams()
    rss = footprint.FootprintParams()
    net = networking.NetParams()
    passes = planner_bench.PlannerParams()
    apply_loop = bridge.BridgeParams()
    cli_params = cli.CliParams()
    if args.quick:
        latency = replace(latency, warmup=50, sequential=500, concurrent=5000)
        raft_fail = replace(raft_fail, trials=5)
        api = replace(api, warmup=50, writes=500)
        leader = replace(leader, trials=5)
        follower = replace(follower, trials=3)
        cut = replace(cut, trials=2)
        etcd_fail = replace(etcd_fail, trials=5)
        boxes = replace(boxes, crash_trials=3, crash_trials_default_delay=1, create_trials=1)
        workers = replace(workers, failure_trials=2, schedule_trials=1)
        cli_params = replace(cli_params, runs=15)
    elif args.smoke:
        latency = replace(latency, warmup=10, sequential=50, concurrent=500, proposers=8)
        raft_fail = failover.FailoverParams.smoke()
        api = replace(api, warmup=10, writes=50)
        leader = leader_failover.LeaderFailoverParams.smoke()
        follower = follower_loss.FollowerLossParams.smoke()
        cut = partition.PartitionParams.smoke()
        etcd_fail = leader_failover.LeaderFailoverParams.smoke()
        boxes = replace(boxes, crash_trials=1, crash_trials_default_delay=1, create_replicas=3)
        boxes = replace(boxes, create_trials=1)
        workers = workers_bench.WorkerParams.smoke()
        rss = footprint.FootprintParams.smoke()
        net = networking.NetParams.smoke()
        passes = planner_bench.PlannerParams.smoke()
        apply_loop = bridge.BridgeParams.smoke()
        cli_params = cli.CliParams.smoke()
    if args.trials is not None:
        n = max(1, args.trials)
        raft_fail = replace(raft_fail, trials=n)
        leader = replace(leader, trials=n)
        follower = replace(follower, trials=n)
        cut = replace(cut, trials=n)
        etcd_fail = replace(etcd_fail, trials=n)
        boxes = replace(boxes, crash_trials=n, create_trials=n)
        workers = replace(workers, failure_trials=n, schedule_trials=n)
    options = NodeOptions(log_level=args.log_level)
    s = Scenario
    return [
        s(
            "commit_latency",
            "warren_raft 1/3/5 nodes: propose() → applied, sequential and 64 in flight (latency, throughput)",
            900,
            lambda d: commit_latency.run(d, latency, options),
        ),
        s(
            "failover",
            "warren_raft 3 nodes: SIGKILL of the leader → first commit acknowledged by a survivor",
            600,
            lambda d: failover.run(d, raft_fail, options),
        ),
        s(
            "pysyncobj",
            "PySyncObj 3 nodes, the commit_latency workload (peer)",
            600,
            lambda d: pysyncobj_bench.run(d, replace(latency, sizes=(3,))),
        ),
        s(
            "manager_api",
            "3 managers: an API write (PATCH of a service) via the leader and via a follower → 2xx read",
            600,
            lambda d: manager_api.run(d, api),
        ),
        s(
            "leader_failover",
            "3 managers: SIGKILL / SIGSTOP / SIGTERM of the leader → first write acknowledged by a survivor",
            leader.max_wall_s + 300,
            lambda d: leader_failover.run(d, leader),
        ),
        s(
            "follower_loss",
            "3 managers: SIGKILL of a follower → longest write gap; its restart → caught up",
            900,
            lambda d: follower_loss.run(d, follower),
        ),
        s(
            "partition",
            "3 managers in network namespaces: leader cut off → write via the majority; heal → catch-up",
            900,
            lambda d: partition.run(d, cut),
        ),
        s(
            "etcd",
            "etcd 3 members (peer): put latency via leader and follower; SIGKILL of the leader → write",
            1200,
            lambda d: etcd_peer.run(d, api, etcd_fail),
        ),
        s(
            "containers",
            "Warren on the Docker Engine: container SIGKILL → replacement started; create → N started",
            900,
            lambda d: workers_bench.containers(d, boxes),
        ),
        s(
            "swarm",
            "Docker Swarm, single node, same engine and image (peer): the containers scenario",
            900,
            lambda d: swarm_peer.run(boxes),
        ),
        s(
            "worker_failure",
            "3 process workers: SIGKILL of a worker and its tasks → all its tasks running elsewhere",
            900,
            lambda d: workers_bench.worker_failure(d, workers),
        ),
        s(
            "schedule",
            "4 process workers: service create with 250, 500, 1,000, 2,000, 4,000 replicas → all running",
            900,
            lambda d: workers_bench.schedule(d, workers),
        ),
        s(
            "planner",
            "the leader's reconcile pass over 10,000 running tasks: nothing changed, one task exited, "
            "from scratch (in process, a real Store)",
            600,
            lambda d: planner_bench.run(d, passes),
        ),
        s(
            "footprint",
            "3 managers + 1 worker at rest for 60 s: idle RSS and CPU of each; installed size with its deps",
            900,
            lambda d: footprint.run(d, rss),
        ),
        s(
            "networking",
            "DNS query latency (Warren worker vs Docker's 127.0.0.11); HTTP through the ingress proxy, "
            "Docker port publishing, Swarm's routing mesh vs direct (p50/p99, req/s); gap after a node loss",
            1200,
            lambda d: networking.run(d, net),
        ),
        s(
            "bridge",
            "the state machine's apply loop on a real Store: compiled bridge vs pure bridge, same batches "
            "(entries/s, ns/entry; the entry loop alone; where the time goes)",
            300,
            lambda d: bridge.run(d, apply_loop),
        ),
        s(
            "cli",
            "`warren service ls` against 1 local manager, a whole process (wall time); `docker service ls` "
            "(peer), `python -c pass` and `warren --version` (floors) beside it",
            600,
            lambda d: cli.run(d, cli_params),
        ),
    ]


def scenario_names() -> list[str]:
    """Every scenario's name, in the order a run takes them (read off `scenarios`, the one list)."""
    defaults = argparse.Namespace(quick=False, smoke=False, trials=None, log_level="info")
    return [s.name for s in scenarios(defaults)]


def timer_settings() -> dict[str, Any]:
    """The default timers every Warren scenario runs with (none of them overrides one)."""
    raft, orchestrator = RaftSettings(), OrchestratorSettings()
    return {
        "raft": asdict(raft),
        "worker_heartbeat_period_s": orchestrator.heartbeat_period_s,
        "node_down_grace_s": orchestrator.node_down_grace_s,
    }


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["compare"]:
        return compare.main(argv[1:])
    args = parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per polling request
    chosen = [s for s in scenarios(args) if not args.only or s.name in args.only]
    if args.list:
        for s in chosen:
            sys.stdout.write(f"{s.name:16} {s.measures}\n")
        return 0

    work_dir = Path(tempfile.mkdtemp(prefix="warren-bench-"))
    profile = "smoke" if args.smoke else "quick" if args.quick else "full"
    run: dict[str, Any] = {
        "timestamp": datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ"),
        "argv": argv,
        "profile": profile,
        "machine": report.machine_info(work_dir),
        "timers": timer_settings(),
        "scenarios": {},
    }
    interrupted = False
    try:
        with sigterm_raises():  # SIGTERM unwinds like Ctrl-C: every harness kills its processes
            for scenario in chosen:
                budget = SMOKE_BUDGET_S if args.smoke else None
                run["scenarios"][scenario.name] = run_scenario(scenario, work_dir, budget)
    except KeyboardInterrupt:
        interrupted = True  # the scenario cleaned up on its way out; keep what finished
        run["interrupted"] = True
        log.warning("interrupted: writing the scenarios that finished")
    finally:
        if args.keep_data:
            log.info("node data and logs kept in %s", work_dir)
        else:
            shutil.rmtree(work_dir, ignore_errors=True)

    path = report.write(run, args.out)
    sys.stdout.write(report.text_table(run))
    sys.stdout.write(f"\nfull results: {path}\n")
    return 130 if interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
