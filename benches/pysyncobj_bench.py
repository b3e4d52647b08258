"""Scenario `pysyncobj`: the commit_latency workload on a 3-node PySyncObj cluster, for comparison.

PySyncObj is given its best setting for each half: `appendEntriesUseBatch=False` (send each command at
once) for sequential latency, `True` (batch appends) for pipelined throughput, each on a fresh cluster
with its journal and full dump on disk. Note: its file journal is an mmap that PySyncObj never msyncs per
entry, so an acknowledged PySyncObj commit is not on stable storage the way a warren_raft one is.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import sys
import time
from pathlib import Path
from typing import Any

from benches.commit_latency import LatencyParams, latency_rows, without_samples
from benches.stats import samples_ms, summarize_ms
from tests.integration.cluster import HarnessError, NodeProc, RemoteError
from warren.testing.process import free_port

NODES = 3


def availability() -> str | None:
    """None if PySyncObj can be imported here, else why not."""
    if importlib.util.find_spec("pysyncobj") is None:
        return "pysyncobj is not installed (pip install pysyncobj, or the project's dev extra)"
    return None


def start_cluster(base_dir: Path, batch: bool) -> list[NodeProc]:
    hosts = [f"127.0.0.{40 + i}" for i in range(1, NODES + 1)]
    addrs = [f"{h}:{free_port(h)}" for h in hosts]
    nodes = []
    for i, addr in enumerate(addrs, start=1):
        peers = ",".join(a for a in addrs if a != addr)
        argv = [sys.executable, "-m", "benches.pysyncobj_node", "--id", str(i), "--listen", addr]
        argv += ["--peers", peers, "--data", str(base_dir / f"node{i}")]
        if batch:
            argv.append("--batch")
        nodes.append(NodeProc(i, addr, base_dir / f"node{i}", argv, base_dir / f"node{i}.log"))
    base_dir.mkdir(parents=True, exist_ok=True)
    for node in nodes:
        node.start()
    for node in nodes:
        node.wait_ready()
    return nodes


def wait_leader(nodes: list[NodeProc], timeout: float = 30.0) -> NodeProc:
    """The node all members agree leads, once it has a quorum and has applied the log (polled, 20 ms)."""
    deadline = time.monotonic() + timeout
    last: dict[int, Any] = {}
    while time.monotonic() < deadline:
        last = {n.id: n.call("status", timeout=5) for n in nodes}
        leaders = {s["leader"] for s in last.values()}
        if len(leaders) == 1 and None not in leaders:
            for n in nodes:
                s = last[n.id]
                if s["is_leader"] and s["has_quorum"] and s["ready"]:
                    return n
        time.sleep(0.02)
    raise HarnessError(f"PySyncObj cluster elected no leader in {timeout}s: {last}")


def run(base_dir: Path, params: LatencyParams) -> dict[str, Any]:
    reason = availability()
    if reason is not None:
        return {"status": "skipped", "reason": reason}
    version = importlib.metadata.version("pysyncobj")
    results: dict[str, Any] = {}
    rows: list[dict[str, Any]] = []
    # Unbatched appends are PySyncObj's fastest mode for both workloads here; batched appends are
    # measured too (pipelined only), so the comparison is with whichever setting does better.
    for batch in (False, True):
        variant = "batch" if batch else "default"
        nodes = start_cluster(base_dir / f"pysyncobj-{variant}", batch)
        try:
            result = measure(nodes, params, sequential=not batch)
        except (HarnessError, RemoteError) as exc:
            result = {"error": f"{type(exc).__name__}: {exc}"}
        finally:
            for node in nodes:
                node.kill()
        label = f"PySyncObj {version}, {NODES} nodes" + (", appendEntriesUseBatch" if batch else "")
        rows += latency_rows("pysyncobj", label, NODES, result, params, "-batch" if batch else "")
        results[variant] = without_samples(result)  # the rows hold them
    return {
        "status": "ok",
        "config": {"nodes": NODES, "pysyncobj_version": version, **params.as_dict()},
        "results": results,
        "rows": rows,
    }


def measure(nodes: list[NodeProc], params: LatencyParams, sequential: bool) -> dict[str, Any]:
    leader = wait_leader(nodes)
    size = params.payload_bytes
    out: dict[str, Any] = {"batch_appends": not sequential}
    if sequential:
        leader.call("bench", n=params.warmup, concurrency=1, size=size, timeout=600)
        seq: list[float] = []
        errors: list[Any] = []
        for _ in range(params.trials):
            r = leader.call("bench", n=params.sequential, concurrency=1, size=size, timeout=900)
            seq += r["latencies_s"]
            errors.append(r["errors"])
        out["sequential"] = {**summarize_ms(seq), "samples_ms": samples_ms(seq), "errors": errors}

    leader.call("bench", n=params.warmup * 10, concurrency=params.proposers, size=size, timeout=600)
    lat: list[float] = []
    elapsed = 0.0
    errors = []
    for _ in range(params.trials):
        r = leader.call("bench", n=params.concurrent, concurrency=params.proposers, size=size, timeout=900)
        lat += r["latencies_s"]
        elapsed += r["elapsed_s"]
        errors.append(r["errors"])
    out["concurrent"] = {
        **summarize_ms(lat),
        "samples_ms": samples_ms(lat),
        "proposals": params.concurrent * params.trials,
        "elapsed_s": elapsed,
        "throughput_per_s": len(lat) / elapsed if elapsed > 0 else None,
        "errors": errors,
    }
    out["final_status"] = {n.id: n.call("status", timeout=5) for n in nodes}
    return out
