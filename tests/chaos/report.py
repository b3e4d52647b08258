"""A chaos run's summary: JSON for machines, Markdown beside the benchmark report for people."""

from __future__ import annotations

import json
import statistics
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tests.chaos.nemesis import PARTITIONS, Fault

# The kinds that SIGKILL the leader: its own, the failover a worker is lost in, and every manager at once.
LEADER_KILLS = ("leader-kill", "worker-lost", "all-killed")


def summary(
    *,
    seed: int,
    managers: int,
    duration_s: float,
    faults: Sequence[Fault],
    t0: float,
    operations: Mapping[str, int],
    histories: Mapping[str, Any],
    lost_writes: Sequence[str],
    anomalies: Sequence[str],
    unavailability: Mapping[str, float],
) -> dict[str, Any]:
    kinds = Counter(f.kind for f in faults)
    recovery: dict[str, dict[str, float]] = {}
    for kind in sorted(kinds):
        times = [f.recovered - f.healed for f in faults if f.kind == kind and f.recovered]
        if times:
            recovery[kind] = {"p50_s": round(statistics.median(times), 3), "max_s": round(max(times), 3)}
    return {
        "seed": seed,
        "managers": managers,
        "duration_s": round(duration_s, 1),
        "faults": dict(sorted(kinds.items())),
        "leader_kills": sum(kinds.get(k, 0) for k in LEADER_KILLS),
        "partitions": sum(kinds.get(k, 0) for k in PARTITIONS),
        "operations": dict(operations),
        "histories": dict(histories),
        "lost_writes": len(lost_writes),
        "lost_write_names": list(lost_writes[:20]),
        "anomalies": list(anomalies),
        "longest_unavailability_s": {k: round(v, 3) for k, v in sorted(unavailability.items())},
        "recovery_s": recovery,
        "fault_log": [f.as_dict(t0) for f in faults],
    }


def markdown(doc: Mapping[str, Any]) -> str:
    verdict = "passed" if not doc["anomalies"] and not doc["lost_writes"] else "FAILED"
    lines = [
        f"# Chaos run: {verdict}",
        "",
        f"Seed {doc['seed']}, {doc['managers']} managers, {doc['duration_s']:.0f} s of faults: "
        f"{sum(doc['faults'].values())} faults, {doc['leader_kills']} leader kills (SIGKILL of the leader: "
        f"{', '.join(LEADER_KILLS)}), {doc['partitions']} partitions ({', '.join(PARTITIONS)}).",
        "",
        "| fault | injected | longest unavailability (s) | recovery p50 / max (s) |",
        "| --- | ---: | ---: | ---: |",
    ]
    for kind, count in doc["faults"].items():
        gap = doc["longest_unavailability_s"].get(kind)
        rec = doc["recovery_s"].get(kind, {})
        lines.append(
            f"| {kind} | {count} | {'' if gap is None else f'{gap:.2f}'} | "
            f"{rec.get('p50_s', 0):.2f} / {rec.get('max_s', 0):.2f} |"
        )
    ops = ", ".join(f"{k} {v}" for k, v in doc["operations"].items())
    lines += ["", f"Operations: {ops}.", ""]
    for name, result in doc["histories"].items():
        lines.append(f"- History `{name}`: {result}")
    lines += [
        f"- Acknowledged writes lost: {doc['lost_writes']}.",
        f"- Anomalies: {len(doc['anomalies'])}" + (":" if doc["anomalies"] else "."),
    ]
    lines += [f"  - {a}" for a in doc["anomalies"]]
    return "\n".join(lines) + "\n"


def write(doc: Mapping[str, Any], out_dir: Path) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    as_json, as_md = out_dir / "chaos.json", out_dir / "chaos.md"
    as_json.write_text(json.dumps(doc, indent=2) + "\n")
    as_md.write_text(markdown(doc))
    return as_json, as_md


def main(argv: Sequence[str]) -> int:
    """`python -m tests.chaos.report DIR`: render DIR/chaos.md again from DIR/chaos.json (the counts
    derived from its faults recomputed), e.g. after the report's format changed."""
    out_dir = Path(argv[0]) if argv else Path("benches/results")
    doc = json.loads((out_dir / "chaos.json").read_text())
    doc["leader_kills"] = sum(doc["faults"].get(k, 0) for k in LEADER_KILLS)
    doc["partitions"] = sum(doc["faults"].get(k, 0) for k in PARTITIONS)
    write(doc, out_dir)
    return 0


if __name__ == "__main__":
    import sys

    raise SystemExit(main(sys.argv[1:]))
