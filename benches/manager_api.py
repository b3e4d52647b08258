"""Scenario `manager_api`: how long one API write takes as a client sees it, via the leader and a follower.

A 3-manager cluster is formed through the CLI (`benches.managers`). A client holding one persistent
HTTP/1.1 keep-alive connection over TLS (the cluster's admin certificate: mutual TLS, as the CLI talks
to the API) sends `PATCH /v1/services/b-<n % 16> {"labels": {"seq": "<n>"}}` (see `service_write`), one
at a time: after a warm-up, each write is timed from just before the request is written to the socket
until the 200 answer has been read. The TLS handshake happens in the warm-up, so a timed write pays
what TLS costs a request on an open connection, not a handshake. The leader's writes go straight to
Raft; a follower's are forwarded to the leader over HTTPS (mutual TLS between managers) and answered
with the leader's reply. The etcd peer (benches/etcd_peer.py, plain HTTP) runs `timed_writes` on its
put the same way.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from benches.managers import HarnessError, Http, HttpError, ManagerCluster, ManagerProc
from benches.stats import samples_ms, summarize_ms

EVENT = "request written → 2xx answer read (keep-alive HTTP/1.1, TLS for Warren, 1 client, sequential)"
MANAGERS = 3

# One write: (method, path, body) for the n-th write, and whether an answer (status, body) acknowledges it.
MakeWrite = Callable[[int], tuple[str, str, bytes]]
Acked = Callable[[int, bytes], bool]


@dataclass(frozen=True)
class ApiLatencyParams:
    warmup: int = 200  # untimed writes first, on the same connection; writes
    writes: int = 2000  # timed sequential writes per target (leader, follower); writes
    request_timeout_s: float = 10.0  # a write without an answer by then counts as an error; seconds
    max_errors: int = 20  # stop a target's run after this many failed writes; writes
    max_wall_s: float = 300.0  # stop a target's run after this long (recorded); seconds

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# Services the writes cycle through. A cluster's state stays the size of a small cluster's however long
# a scenario writes: creating a service per write would grow it to thousands of services, each replanned
# on every pass, and the later trials would measure that growth instead of the failover.
POOL = 16


def service_write(prefix: str, via: ManagerProc) -> MakeWrite:
    """Write n: `PATCH /v1/services/<prefix><n % POOL>` with a new label value: a spec change, one Raft
    write, and no rollout (labels are not a task field). The pool's services (0 replicas: nothing to
    schedule) are created through `via` first."""
    conn = via.http(10.0)
    try:
        for i in range(POOL):
            body = json.dumps({"name": f"{prefix}{i}", "image": "x", "replicas": 0}).encode()
            status, data = conn.request("POST", "/v1/services", body)
            if status not in (201, 409):  # 409: made by an earlier call with this prefix
                what = f"HTTP {status}: {data[:200]!r}"
                raise HarnessError(f"creating service {prefix}{i} through {via.label}: {what}")
    finally:
        conn.close()

    def make(n: int) -> tuple[str, str, bytes]:
        return "PATCH", f"/v1/services/{prefix}{n % POOL}", json.dumps({"labels": {"seq": str(n)}}).encode()

    return make


def written(status: int, _: bytes) -> bool:
    return status == 200


def timed_writes(
    conn: Http, make: MakeWrite, acked: Acked, params: ApiLatencyParams, first: int = 0
) -> dict[str, Any]:
    """Warm up, then time `params.writes` sequential writes on `conn`: summary (ms), every write's time
    (`samples_ms`, in order) and the error count."""
    conn.reconnect()
    n = first
    errors: list[str] = []
    for _ in range(params.warmup):
        method, path, body = make(n)
        n += 1
        try:
            conn.request(method, path, body, params.request_timeout_s)
        except HttpError as exc:
            errors.append(f"warm-up: {exc}")
            if len(errors) >= params.max_errors:
                break
    samples: list[float] = []
    t_start = time.perf_counter()
    over_budget = False
    while len(samples) < params.writes and len(errors) < params.max_errors:
        if time.perf_counter() - t_start > params.max_wall_s:
            over_budget = True
            break
        method, path, body = make(n)
        n += 1
        t0 = time.perf_counter()
        try:
            status, data = conn.request(method, path, body, params.request_timeout_s)
        except HttpError as exc:
            errors.append(str(exc))
            continue
        elapsed = time.perf_counter() - t0
        if acked(status, data):
            samples.append(elapsed)
        else:
            errors.append(f"HTTP {status}: {data[:200]!r}")
    wall = time.perf_counter() - t_start
    result: dict[str, Any] = {
        **summarize_ms(samples),
        "samples_ms": samples_ms(samples),
        "errors": len(errors),
        "first_errors": errors[:5],
        "writes_per_s": len(samples) / wall if wall > 0 else None,
        "next": n,
    }
    if len(errors) >= params.max_errors:
        result["error"] = f"stopped after {len(errors)} failed writes; first: {errors[0]}"
    elif over_budget:
        result["error"] = f"stopped after {len(samples)} writes: over the {params.max_wall_s:g} s budget"
    return result


def latency_row(scenario: str, key: str, what: str, result: dict[str, Any]) -> dict[str, Any]:
    """The table row for one `timed_writes` result. Its `samples_ms` move from `result` into the row, so
    a caller that also records `result` stores them once."""
    row: dict[str, Any] = {"scenario": scenario, "key": key, "what": what, "event": EVENT}
    samples = result.pop("samples_ms", None)
    if result.get("count"):
        row["trials"] = result["count"]
        row.update({k: result.get(k) for k in ("p50_ms", "p90_ms", "p99_ms", "p99_9_ms", "max_ms")})
        row["throughput_per_s"] = result.get("writes_per_s")
        row["samples_ms"] = samples or []
    if result.get("errors"):
        row["note"] = f"{result['errors']} failed write(s); first: {result['first_errors'][:1]}"
    if result.get("error"):
        row["error"] = result["error"]
    return row


def run(base_dir: Path, params: ApiLatencyParams) -> dict[str, Any]:
    results: dict[str, Any] = {"loadavg_before": os.getloadavg()}
    error = None
    with ManagerCluster(base_dir / "manager-api") as cluster:
        try:
            leader = cluster.start(MANAGERS)
            follower = next(m for m in cluster.managers if m is not leader)
            n = 0
            for role, target in (("leader", leader), ("follower", follower)):
                conn = target.http(params.request_timeout_s)
                try:
                    make = service_write("b-", leader)
                    results[role] = timed_writes(conn, make, written, params, first=n)
                finally:
                    conn.close()
                n = results[role]["next"]
                results[role]["manager"] = target.label
            # A leader change during the run would mix an election into the numbers: say so.
            after = cluster.wait_stable()
            results["leader_changed"] = after is not leader
        except HarnessError as exc:
            error = f"{type(exc).__name__}: {exc}"
    results["loadavg_after"] = os.getloadavg()
    rows = []
    for role, via in (("leader", "the leader"), ("follower", "a follower (forwarded to the leader)")):
        if role in results:
            what = f"Warren API, {MANAGERS} managers: PATCH /v1/services/NAME (a label) via {via}"
            row = latency_row("manager_api", f"manager_api/{MANAGERS}/{role}", what, results[role])
            if results.get("leader_changed"):
                row["note"] = (row.get("note", "") + " the leader changed during the run").strip()
            rows.append(row)
    if error is not None:
        rows.append(
            {"scenario": "manager_api", "key": f"manager_api/{MANAGERS}", "what": "cluster", "error": error}
        )
    return {
        "status": "ok" if error is None else "error",
        "error": error,
        "config": {"managers": MANAGERS, **params.as_dict()},
        "results": results,
        "rows": rows,
    }
