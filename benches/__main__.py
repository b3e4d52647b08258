"""`python -m benches [--only NAME ...] [--trials N] [--out DIR] [--quick]`: run, record, print.

Scenarios: commit_latency (1/3/5 warren_raft nodes, sequential and 64 concurrent proposers), failover
(kill -9 of the leader, ≥ 20 trials), pysyncobj (the commit_latency workload on PySyncObj), manager_api
(API write latency through the leader and a follower of 3 managers), client_failover (kill -9 of the
leader manager → first API write acknowledged through a survivor, ≥ 20 trials) and etcd (those two on a
3-member etcd), containers (Warren on the Docker Engine: container crash → replacement running,
service create → 20 replicas running), swarm (the same two on a single-node Docker Swarm on the same
engine), worker_failure (kill -9 of a worker → its tasks running elsewhere) and schedule (100 replicas on
process-runtime workers). Results go to DIR/bench-<UTC timestamp>.json (this run) and DIR/latest.json (every
number, machine facts, configuration; scenarios not run this time are kept from earlier runs) and a
table to stdout and DIR/latest.md, with each target marked met or missed. A failing scenario is recorded
as an error and the run continues: benchmarks measure, they never assert.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benches import (
    client_failover,
    commit_latency,
    etcd_peer,
    failover,
    manager_api,
    pysyncobj_bench,
    report,
    swarm_peer,
    workers_bench,
)
from benches.managers import sigterm_raises
from tests.integration.cluster import NodeOptions

log = logging.getLogger("benches")

SCENARIOS = (
    "commit_latency",
    "failover",
    "pysyncobj",
    "manager_api",
    "client_failover",
    "etcd",
    "containers",
    "swarm",
    "worker_failure",
    "schedule",
)
DEFAULT_OUT = Path(__file__).resolve().parent / "results"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    summary = __doc__.splitlines()[0] if __doc__ else ""
    p = argparse.ArgumentParser(prog="python -m benches", description=summary)
    p.add_argument("--only", nargs="+", choices=SCENARIOS, metavar="NAME", help=", ".join(SCENARIOS))
    p.add_argument("--trials", type=int, help="failover kills (default 20); latency repetitions (default 1)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results dir (default benches/results)")
    p.add_argument("--quick", action="store_true", help="a tenth of the proposals, 3 failover trials")
    p.add_argument("--keep-data", action="store_true", help="keep node data dirs and logs (path is logged)")
    p.add_argument("--log-level", default="info", help="warren_raft log level in the node processes")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    selected = args.only or list(SCENARIOS)

    latency = commit_latency.LatencyParams()
    fail = failover.FailoverParams()
    api = manager_api.ApiLatencyParams()
    client_fail = client_failover.ClientFailoverParams()
    boxes = swarm_peer.ContainerParams()
    workers = workers_bench.WorkerParams()
    if args.quick:
        boxes = replace(boxes, crash_trials=3, crash_trials_default_delay=1, create_trials=1)
        workers = replace(workers, failure_trials=2, schedule_trials=1)
        latency = replace(latency, warmup=50, sequential=200, concurrent=2000)
        fail = replace(fail, trials=3)
        api = replace(api, warmup=50, writes=300)
        client_fail = replace(client_fail, trials=3)
    if args.trials is not None:
        latency = replace(latency, trials=max(1, args.trials))
        fail = replace(fail, trials=max(1, args.trials))
        api = replace(api, writes=api.writes * max(1, args.trials))
        client_fail = replace(client_fail, trials=max(1, args.trials))
        boxes = replace(boxes, crash_trials=max(1, args.trials), create_trials=max(1, args.trials))
        workers = replace(workers, failure_trials=max(1, args.trials), schedule_trials=max(1, args.trials))
    options = NodeOptions(log_level=args.log_level)

    work_dir = Path(tempfile.mkdtemp(prefix="warren-bench-"))
    run: dict[str, Any] = {
        "timestamp": datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ"),
        "argv": sys.argv[1:] if argv is None else argv,
        "machine": report.machine_info(work_dir),
        "scenarios": {},
    }
    runners: dict[str, Callable[[], dict[str, Any]]] = {
        "commit_latency": lambda: commit_latency.run(work_dir, latency, options),
        "failover": lambda: failover.run(work_dir, fail, options),
        "pysyncobj": lambda: pysyncobj_bench.run(work_dir, replace(latency, sizes=(3,))),
        "manager_api": lambda: manager_api.run(work_dir, api),
        "client_failover": lambda: client_failover.run(work_dir, client_fail),
        "etcd": lambda: etcd_peer.run(work_dir, api, client_fail),
        "containers": lambda: workers_bench.containers(work_dir, boxes),
        "swarm": lambda: swarm_peer.run(boxes),
        "worker_failure": lambda: workers_bench.worker_failure(work_dir, workers),
        "schedule": lambda: workers_bench.schedule(work_dir, workers),
    }
    try:
        with sigterm_raises():  # SIGTERM unwinds like Ctrl-C: every harness kills its processes
            for name in SCENARIOS:
                if name not in selected:
                    continue
                log.info("scenario %s: starting", name)
                t0 = time.monotonic()
                try:
                    result = runners[name]()
                except Exception as exc:  # scenario boundary: record the failure, go on with the next one
                    log.exception("scenario %s failed", name)
                    result = {
                        "status": "error",
                        "error": f"{type(exc).__name__}: {exc}",
                        "traceback": traceback.format_exc(),
                    }
                result["wall_s"] = time.monotonic() - t0
                run["scenarios"][name] = result
                log.info("scenario %s: %s in %.1fs", name, result.get("status"), result["wall_s"])
    finally:
        if args.keep_data:
            log.info("node data and logs kept in %s", work_dir)
        else:
            shutil.rmtree(work_dir, ignore_errors=True)

    report.apply_targets([row for s in run["scenarios"].values() for row in s.get("rows", [])])
    path = report.write(run, args.out)
    sys.stdout.write(report.text_table(run))
    sys.stdout.write(f"\nfull results: {path}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
