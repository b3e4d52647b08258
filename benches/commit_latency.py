"""Scenario `commit_latency`: how long a proposal takes to commit and apply, alone and 64 at a time.

For 1, 3 and 5 warren_raft nodes (separate processes), and 3 nodes again with mutual TLS on the Raft
transport (what every Warren manager runs; the two 3-node rows together are TLS's cost): sequential
proposals on the leader after a
warm-up give p50/p99/p99.9; then `proposers` concurrent asyncio tasks on the leader give throughput and
latency under load. Latency is measured inside the leader process around `await node.propose(...)`, so
it covers consensus, the fsync'd log and the Python state machine, and no harness round trip. Each row
keeps every proposal's latency (`samples_ms`) for the plots and `python -m benches compare`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from benches.stats import samples_ms, summarize_ms
from tests.integration.cluster import (
    CERTS,
    Cluster,
    HarnessError,
    NodeOptions,
    RemoteError,
    TlsOptions,
)
from warren.testing.wait import WaitTimeout

EVENT = "propose() called → applied response returned (leader process)"


@dataclass(frozen=True)
class LatencyParams:
    sizes: tuple[int, ...] = (1, 3, 5)  # cluster sizes; nodes
    tls_sizes: tuple[int, ...] = (3,)  # cluster sizes measured again with mutual TLS (at most 3); nodes
    warmup: int = 200  # sequential proposals before measuring; entries
    sequential: int = 2000  # measured sequential proposals per trial; entries
    concurrent: int = 20000  # measured proposals per trial with `proposers` in flight; entries
    proposers: int = 64  # concurrent proposers; tasks
    payload_bytes: int = 64  # size of each proposal; bytes
    trials: int = 1  # repetitions, samples pooled

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def run(base_dir: Path, params: LatencyParams, options: NodeOptions) -> dict[str, Any]:
    results: dict[str, Any] = {}
    rows: list[dict[str, Any]] = []
    runs = [(n, False) for n in params.sizes] + [(n, True) for n in params.tls_sizes]
    for n, tls in runs:
        variant = "-tls" if tls else ""
        with Cluster(base_dir / f"commit-{n}{variant}", options) as cluster:
            try:
                if tls:
                    for node_id in range(1, n + 1):
                        cluster.add_node(node_id, TlsOptions(**asdict(options), stem=CERTS[node_id]))
                result = measure(cluster, n, params)
            except (HarnessError, RemoteError, WaitTimeout) as exc:
                result = {"error": f"{type(exc).__name__}: {exc}"}
        label = f"warren_raft, {n} node{'s' * (n > 1)}{', mutual TLS' if tls else ''}"
        rows += latency_rows("commit_latency", label, n, result, params, variant)
        results[f"{n}{variant}"] = without_samples(result)  # the rows hold them; once is enough in the JSON
    return {
        "status": "ok",
        "config": {**params.as_dict(), "node_options": asdict(options)},
        "results": results,
        "rows": rows,
    }


def measure(cluster: Cluster, n: int, params: LatencyParams) -> dict[str, Any]:
    leader = cluster.start(n)
    size = params.payload_bytes
    before = cluster.metrics()
    leader.call("bench", n=params.warmup, concurrency=1, size=size, timeout=600)
    seq: list[float] = []
    for _ in range(params.trials):
        seq += leader.call("bench", n=params.sequential, concurrency=1, size=size, timeout=900)["latencies_s"]

    leader.call("bench", n=params.warmup * 10, concurrency=params.proposers, size=size, timeout=600)
    conc: list[float] = []
    elapsed = 0.0
    for _ in range(params.trials):
        r = leader.call("bench", n=params.concurrent, concurrency=params.proposers, size=size, timeout=900)
        conc += r["latencies_s"]
        elapsed += r["elapsed_s"]
    after = cluster.metrics()
    return {
        "leader": leader.id,
        "sequential": {**summarize_ms(seq), "samples_ms": samples_ms(seq)},
        "concurrent": {
            **summarize_ms(conc),
            "samples_ms": samples_ms(conc),
            "proposals": len(conc),
            "elapsed_s": elapsed,
            "throughput_per_s": len(conc) / elapsed if elapsed > 0 else None,
        },
        # A leader change during the run would make the numbers meaningless: record terms and elections.
        "stability": {
            node_id: {
                "term_before": before.get(node_id, {}).get("term"),
                "term_after": m.get("term"),
                "elections_during": m.get("elections_total", 0)
                - before.get(node_id, {}).get("elections_total", 0),
            }
            for node_id, m in after.items()
        },
    }


def latency_rows(
    scenario: str, label: str, nodes: int, result: dict[str, Any], params: LatencyParams, variant: str = ""
) -> list[dict[str, Any]]:
    """Table rows for one cluster's sequential and concurrent measurements (an error row if it failed),
    each with the phase's raw `samples_ms` when `result` has them.

    Row keys are `<scenario>/<nodes><variant>/<sequential|concurrent>`; targets.py finds targets by key.
    """
    common: dict[str, Any] = {"scenario": scenario, "event": EVENT}
    if "error" in result and "sequential" not in result and "concurrent" not in result:
        return [{**common, "key": f"{scenario}/{nodes}{variant}", "what": label, "error": result["error"]}]
    rows = []
    phases = (
        ("sequential", f"1 proposer, {params.payload_bytes} B"),
        ("concurrent", f"{params.proposers} proposers, {params.payload_bytes} B"),
    )
    for phase, load in phases:
        measured = result.get(phase)
        if measured is None:
            continue
        row = {**common, "key": f"{scenario}/{nodes}{variant}/{phase}", "what": f"{label}: {load}"}
        if "error" in measured:
            row["error"] = measured["error"]
        else:
            row.update(_latency_cells(measured))
            if "samples_ms" in measured:
                row["samples_ms"] = measured["samples_ms"]
            if phase == "sequential":
                mean = measured.get("mean_ms")
                row["throughput_per_s"] = 1000.0 / mean if mean else None
            else:
                row["throughput_per_s"] = measured.get("throughput_per_s")
        rows.append(row)
    return rows


def _latency_cells(summary: dict[str, Any]) -> dict[str, Any]:
    return {
        "trials": summary.get("count"),
        **{k: summary.get(k) for k in ("p50_ms", "p90_ms", "p99_ms", "p99_9_ms", "max_ms")},
    }


def without_samples(result: dict[str, Any]) -> dict[str, Any]:
    """`result` with its phases' `samples_ms` left out (they go into the rows)."""
    return {
        key: {k: v for k, v in value.items() if k != "samples_ms"} if isinstance(value, dict) else value
        for key, value in result.items()
    }
