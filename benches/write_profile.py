"""Where an API write's milliseconds go: a tool for a person with a profiler, not a scenario of the suite.

`python -m benches.write_profile [--writes N] [--gap-ms MS] [--base DIR] [--hold] [--phases]` forms 3
managers exactly as `manager_api` does (benches.managers), prints the leader's pid and metrics address,
then sends the `manager_api` writes (PATCH of a service's label, one kept mutual-TLS connection,
sequential; back to back, or `--gap-ms` apart) to the leader and prints, for the timed window: the
client's p50/mean, and from the leader's own Prometheus
histograms (no code change: a scrape before and after) the mean time inside the API stack
(`warren_api_request_duration_seconds`, measured in LeaderRouting: body read to answer sent) and inside
`Consensus.propose` (`warren_raft_commit_duration_seconds`: propose to applied on the leader). With
`--hold` it waits for Enter before the timed window, so `py-spy record --pid PID` can be started on it.

With `--phases`, the managers start with benches/write_phases on PYTHONPATH (its sitecustomize wraps five
Warren methods with timestamps, Warren's code unchanged) and the leader's per-write phases are printed
as p50 and mean, in microseconds: the breakdown in docs/decisions.md (issue 18, "Where an API write's
milliseconds go").
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import re
import statistics
import tempfile
import time
import urllib.request
from pathlib import Path

from benches.manager_api import ApiLatencyParams, service_write
from benches.managers import ManagerCluster


def _scrape(metrics_addr: str) -> dict[str, float]:
    text = urllib.request.urlopen(f"http://{metrics_addr}/metrics", timeout=5).read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        m = re.match(r"^(warren_raft_commit_duration_seconds|warren_api_request_duration_seconds)"
                     r"_(sum|count|bucket)(\{.*\})?\s+(\S+)$", line)  # fmt: skip
        if m and (m.group(1).startswith("warren_raft") or 'method="PATCH"' in (m.group(3) or "")):
            le = re.search(r'le="([^"]+)"', m.group(3) or "")
            key = f"{m.group(1)}_{m.group(2)}" + (f"_le{le.group(1)}" if le else "")
            out[key] = out.get(key, 0.0) + float(m.group(4))
    return out


def _buckets(before: dict[str, float], after: dict[str, float], name: str) -> str:
    """The share of the window's observations at or under each bucket bound (cumulative)."""
    n = after.get(f"{name}_count", 0.0) - before.get(f"{name}_count", 0.0)
    parts = []
    for key in after:
        if key.startswith(f"{name}_bucket_le") and n:
            bound = key.split("_le", 1)[1]
            share = (after[key] - before.get(key, 0.0)) / n
            if 0.0 < share < 1.0 or bound in ("0.002", "0.005"):
                parts.append(f"<= {bound} s: {100 * share:.0f} %")
    return ", ".join(parts)


def _mean_ms(before: dict[str, float], after: dict[str, float], name: str) -> float | None:
    n = after.get(f"{name}_count", 0.0) - before.get(f"{name}_count", 0.0)
    s = after.get(f"{name}_sum", 0.0) - before.get(f"{name}_sum", 0.0)
    return 1000 * s / n if n else None


PHASES = (
    ("req0", "handler0", "ASGI in: Warren middleware, routing, FastAPI dependencies, body validation"),
    (
        "handler0",
        "propose0",
        "handler before propose: known secrets/configs, read service, decode merged spec",
    ),
    ("propose0", "apply0", "propose -> apply begins (Rust: append+fsync, replicate, follower fsync, commit)"),
    ("apply0", "apply1", "Store.apply: SQLite transaction, spec decode, read back, on_change callbacks"),
    ("apply1", "propose1", "apply returned -> propose() returns (answer back through Rust, loop wake)"),
    ("propose1", "resp_start", "answer built"),
    ("resp_start", "resp_sent", "answer encoded and written (TLS)"),
    ("resp_sent", "req1", "after the answer (metrics)"),
    ("req0", "req1", "total inside the leader's ASGI stack"),
)


def _phases(out: str, skip: int) -> None:
    recs = []
    for path in glob.glob(f"{out}.*"):
        with open(path) as f:
            recs += [json.loads(line) for line in f]
    recs = [r for r in recs if "apply0" in r and "resp_sent" in r][skip:]
    if not recs:
        print(f"no phase records in {out}.*")
        return
    print(f"leader phases, {len(recs)} writes (us): p50 / mean")
    for a, b, what in PHASES:
        v = [r[b] - r[a] for r in recs]
        print(f"  {statistics.median(v):6.0f} / {statistics.fmean(v):6.0f}  {what}")
    hop = [r for r in recs if "pass0" in r and r["apply1"] <= r["pass0"] <= r["propose1"]]
    print(
        f"  a reconcile pass began between apply and the answer in {len(hop)} of {len(recs)} writes", end=""
    )
    if hop:
        print(f" (pass p50 {statistics.median([r['pass1'] - r['pass0'] for r in hop]):.0f} us)")
    else:
        print()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--writes", type=int, default=3000)
    ap.add_argument("--base", type=Path, default=None)
    ap.add_argument("--hold", action="store_true", help="wait for Enter before the timed writes")
    ap.add_argument("--phases", action="store_true", help="time the leader's phases (benches/write_phases)")
    ap.add_argument(
        "--gap-ms", type=float, default=0.0, help="pause between writes (0: back to back, as manager_api)"
    )
    args = ap.parse_args()
    base = args.base or Path(tempfile.mkdtemp(prefix="warren-writeprof-"))
    if args.phases:  # the managers inherit this environment (warren.testing.process.daemon_env)
        site = str(Path(__file__).resolve().parent / "write_phases")
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [site, os.environ.get("PYTHONPATH")]))
        os.environ["WRITEPROF_OUT"] = str(base / "phases")
    params = ApiLatencyParams()
    with ManagerCluster(base / "managers") as cluster:
        leader = cluster.start(3)
        pid = leader.proc.pid if leader.proc is not None else None
        print(f"leader {leader.label} pid {pid} metrics {leader.metrics_addr}", flush=True)
        make = service_write("p-", leader)
        conn = leader.http(params.request_timeout_s)
        for n in range(params.warmup):
            conn.request(*make(n))
        if args.hold:
            input("timed window next: start the profiler, then press Enter ")
        before = _scrape(leader.metrics_addr)
        samples = []
        for n in range(args.writes):
            if args.gap_ms:
                time.sleep(args.gap_ms / 1000)  # a client that is not writing back to back (a CLI's write)
            method, path, body = make(n)
            t0 = time.perf_counter()
            status, _ = conn.request(method, path, body)
            samples.append(time.perf_counter() - t0)
            assert status == 200, status
        after = _scrape(leader.metrics_addr)
        conn.close()
    ms = sorted(1000 * s for s in samples)
    print(f"client: p50 {statistics.median(ms):.3f} ms, mean {statistics.fmean(ms):.3f} ms, n={len(ms)}")
    api = _mean_ms(before, after, "warren_api_request_duration_seconds")
    commit = _mean_ms(before, after, "warren_raft_commit_duration_seconds")
    print(f"leader, mean: API stack {api} ms; Consensus.propose {commit} ms")
    for name in ("warren_api_request_duration_seconds", "warren_raft_commit_duration_seconds"):
        print(f"  {name}: {_buckets(before, after, name)}")
    if args.phases:
        _phases(str(base / "phases"), skip=params.warmup)


if __name__ == "__main__":
    main()
