"""Where a 3-node sequential commit spends its time: one hop at a time, from probe timestamps.

    python -m benches.commit_probe [--nodes 3] [--n 2000] [--tls] [--out DIR]

Needs warren_raft built with the `probe` cargo feature (rust/src/probe.rs), e.g.
`maturin build --release -m rust/Cargo.toml --features probe`; with an ordinary build it says so and
stops. The nodes run as `tests.integration.raftnode` processes, as in `commit_latency`, with
WARREN_RAFT_PROBE_DIR set: each process writes `(CLOCK_MONOTONIC ns, point, key)` lines. After a
warm-up, `--n` sequential proposals on the leader are taken apart. Every hop of a commit is matched by
log index (the leader's and the first answering follower's points) and the p50 and mean of each hop
are printed, plus the end-to-end latency the bench itself measured around `await node.propose()`.
Not part of the suite: the probe build is slower, so its numbers are for the breakdown only.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from tests.integration.cluster import CERTS, Cluster, NodeOptions, TlsOptions
from warren.testing.wait import eventually

Event = tuple[int, str, int]  # (ns, point, key)


@dataclass
class Trace:
    """One process's probe file."""

    path: Path
    events: list[Event] = field(default_factory=list)

    def points(self, name: str) -> list[Event]:
        return [e for e in self.events if e[1] == name]


def load(dir_: Path) -> list[Trace]:
    traces = []
    for path in sorted(dir_.glob("probe-*.tsv")):
        trace = Trace(path)
        for line in path.read_text().splitlines():
            ns, point, key = line.split("\t")
            trace.events.append((int(ns), point, int(key)))
        trace.events.sort()
        traces.append(trace)
    return traces


def first_at_or_after(events: list[Event], t: int, point: str, key: int | None = None) -> int | None:
    for ns, p, k in events:
        if ns >= t and p == point and (key is None or k == key):
            return ns
    return None


# (label, from, to): each a (role, point, keyed) with role "L" (leader) or "F" (first follower to answer).
HOPS = [
    ("Python propose() → proposer hands batch to openraft", "L:PyPropose", "L:ClientWrite"),
    ("openraft core: client_write → log append called", "L:ClientWrite", "L:LogAppend"),
    ("leader log: append → durable (redb commit + fdatasync)", "L:LogAppend", "L:LogFlushed"),
    ("leader: flushed → AppendEntries handed to transport", "L:LogFlushed", "L:AppendSend"),
    ("network out: leader transport → follower read the frame", "L:AppendSend", "F:AppendReceived"),
    ("follower core: request read → log append called", "F:AppendReceived", "F:LogAppend"),
    ("follower log: append → durable (redb commit + fdatasync)", "F:LogAppend", "F:LogFlushed"),
    ("follower: flushed → answer encoded (core → handler task)", "F:LogFlushed", "F:AppendReplied"),
    ("network back: answer written to the socket → leader has it", "F:AppendReplied", "L:AppendAnswered"),
    ("leader: answer → commit → apply asked of the state machine", "L:AppendAnswered", "L:Apply"),
    ("apply → work item reaches Python (next_work wake-up)", "L:Apply", "L:WorkToPython"),
    # Before answers at apply: the answer went back through openraft, then to the event loop.
    ("Python applies, completes → Rust has the answer", "L:WorkToPython", "L:Applied"),
    ("applied → client_write returns (sm worker → core → proposer)", "L:Applied", "L:Committed"),
    ("committed → propose() result queued for the event loop", "L:Committed", "L:CompletionPushed"),
    # Since: completing the apply answers the proposer, on the event loop's thread.
    ("Python applies, completes; that answers the proposer", "L:WorkToPython", "L:AnsweredAtApply"),
    ("queued → event loop drains it (pipe wake-up)", "L:CompletionPushed", "L:CompletionDrain"),
]


def breakdown(traces: list[Trace], warmup: int) -> tuple[dict[str, list[float]], list[float], dict[str, int]]:
    """Per hop, the µs of each commit (after `warmup` commits); and each commit's PyPropose→drain µs."""
    leader = next(t for t in traces if t.points("PyPropose"))
    followers = [t for t in traces if t is not leader and t.points("AppendReceived")]
    proposes = [e[0] for e in leader.points("PyPropose")][warmup:]
    hops: dict[str, list[float]] = defaultdict(list)
    totals: list[float] = []
    skipped = {"no follower answer": 0, "incomplete": 0}
    for t0 in proposes:
        when: dict[str, int | None] = {"L:PyPropose": t0}
        when["L:ClientWrite"] = first_at_or_after(leader.events, t0, "ClientWrite")
        start = when["L:ClientWrite"]
        append = next(
            (e for e in leader.events if start is not None and e[0] >= start and e[1] == "LogAppend"), None
        )
        if append is None:
            skipped["incomplete"] += 1
            continue
        index = append[2]
        when["L:LogAppend"] = append[0]
        when["L:LogFlushed"] = first_at_or_after(leader.events, append[0], "LogFlushed", index)
        when["L:AppendSend"] = first_at_or_after(leader.events, append[0], "AppendSend", index)
        # The follower whose answer the leader had first made the quorum: the one that replied last
        # before that answer arrived (or, when the follower's thread marked its write late, first).
        answered = first_at_or_after(leader.events, append[0], "AppendAnswered", index)
        when["L:AppendAnswered"] = answered
        replies = [
            (r, f) for f in followers if (r := first_at_or_after(f.events, append[0], "AppendReplied", index))
        ]
        if not replies or answered is None:
            skipped["no follower answer"] += 1
            continue
        before = [x for x in replies if x[0] <= answered]
        best = max(before, key=lambda x: x[0]) if before else min(replies, key=lambda x: x[0])
        follower = best[1]
        received = max(
            (e[0] for e in follower.events if e[1] == "AppendReceived" and e[2] >= index and e[0] <= best[0]),
            default=None,
        )
        when["F:AppendReceived"] = received
        when["F:LogAppend"] = first_at_or_after(follower.events, received or 0, "LogAppend", index)
        when["F:LogFlushed"] = first_at_or_after(follower.events, received or 0, "LogFlushed", index)
        when["F:AppendReplied"] = best[0]
        when["L:Apply"] = first_at_or_after(leader.events, answered or 0, "Apply", index)
        when["L:WorkToPython"] = first_at_or_after(leader.events, when["L:Apply"] or 0, "WorkToPython", index)
        to_python = when["L:WorkToPython"] or 0
        pushed = first_at_or_after(leader.events, to_python, "CompletionPushed")
        committed = first_at_or_after(leader.events, to_python, "Committed", index)
        if committed is not None and pushed is not None and committed <= pushed:
            # The answer came back through openraft's client_write.
            when["L:Applied"] = first_at_or_after(leader.events, to_python, "Applied")
            when["L:Committed"] = committed
        else:
            when["L:AnsweredAtApply"] = pushed
        when["L:CompletionPushed"] = pushed
        when["L:CompletionDrain"] = first_at_or_after(leader.events, pushed or 0, "CompletionDrain")
        if any(v is None for v in when.values()):
            skipped["incomplete"] += 1
            continue
        for label, a, b in HOPS:
            if a in when and b in when:
                hops[label].append(((when[b] or 0) - (when[a] or 0)) / 1000)
        totals.append(((when["L:CompletionDrain"] or 0) - t0) / 1000)
    return hops, totals, skipped


def report(hops: dict[str, list[float]], totals: list[float], skipped: dict[str, int]) -> str:
    lines = ["| hop | p50 µs | mean µs |", "| --- | ---: | ---: |"]
    for label, _, _ in HOPS:
        values = hops.get(label, [])
        if values:
            lines.append(f"| {label} | {statistics.median(values):.0f} | {statistics.fmean(values):.0f} |")
    if totals:
        lines.append(
            f"| **propose() entered → its result being resolved on the event loop** | "
            f"{statistics.median(totals):.0f} | {statistics.fmean(totals):.0f} |"
        )
    lines.append(f"\n{len(totals)} commits taken apart; left out: {skipped}")
    return "\n".join(lines)


def run(out: Path, nodes: int, n: int, warmup: int, tls: bool) -> str:
    probes = out / "probes"
    probes.mkdir(parents=True, exist_ok=True)
    os.environ["WARREN_RAFT_PROBE_DIR"] = str(probes)
    options = NodeOptions()
    with Cluster(out / "cluster", options) as cluster:
        if tls:
            for node_id in range(1, nodes + 1):
                cluster.add_node(node_id, TlsOptions(stem=CERTS[node_id]))
        leader = cluster.start(nodes)
        leader.call("bench", n=warmup, concurrency=1, size=64, timeout=600)
        result = leader.call("bench", n=n, concurrency=1, size=64, timeout=900)
        want = warmup + n

        def written() -> bool:
            return sum(len(t.points("PyPropose")) for t in load(probes)) >= want

        eventually(
            written,
            10.0,
            "the leader's probe file holds every proposal (is warren_raft built with --features probe?)",
        )
    latencies = sorted(x * 1e6 for x in result["latencies_s"])
    hops, totals, skipped = breakdown(load(probes), warmup)
    bench = (
        f"bench (await node.propose(), leader process): p50 {statistics.median(latencies):.0f} µs, "
        f"mean {statistics.fmean(latencies):.0f} µs over {len(latencies)}"
    )
    return f"{report(hops, totals, skipped)}\n{bench}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--nodes", type=int, default=3)
    p.add_argument("--n", type=int, default=2000, help="measured sequential proposals")
    p.add_argument("--warmup", type=int, default=200)
    p.add_argument("--tls", action="store_true", help="mutual TLS on the Raft transport")
    p.add_argument("--out", type=Path, default=None, help="work dir (default: a temporary one)")
    args = p.parse_args()
    if args.out is None:
        with tempfile.TemporaryDirectory(prefix="commit-probe-") as tmp:
            print(run(Path(tmp), args.nodes, args.n, args.warmup, args.tls))
    else:
        print(run(args.out, args.nodes, args.n, args.warmup, args.tls))


if __name__ == "__main__":
    main()
