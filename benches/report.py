"""What a benchmark run reports: machine facts, targets met or missed, the table, the JSON files."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.integration.nodeproc import REPO_ROOT

Row = dict[str, Any]


def machine_info(data_dir: Path) -> dict[str, Any]:
    info: dict[str, Any] = {
        "nproc": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "cpu_model": _cpu_model(),
        "memory": _meminfo_total(),
        "python": sys.version.split()[0],
        "python_implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "data_dir": str(data_dir),
        "data_dir_fs": _fs_type(data_dir),
        "git_commit": _git("rev-parse", "HEAD"),
        "git_dirty": bool(_git("status", "--porcelain", "--untracked-files=no")),
    }
    try:
        import warren_raft

        info["warren_raft_version"] = warren_raft.__version__
    except ImportError as exc:
        info["warren_raft_version"] = f"not importable: {exc}"
    return info


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def _meminfo_total() -> str | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def _fs_type(path: Path) -> str | None:
    """Filesystem type of the mount holding `path` (fsync cost depends on it: tmpfs vs ext4 vs overlay)."""
    try:
        mounts = [line.split() for line in Path("/proc/mounts").read_text().splitlines()]
    except OSError:
        return None
    target = str(path.resolve())
    best: tuple[int, str] | None = None
    for fields in mounts:
        if len(fields) < 3:
            continue
        mount_point = fields[1]
        if target == mount_point or target.startswith(mount_point.rstrip("/") + "/"):
            if best is None or len(mount_point) > best[0]:
                best = (len(mount_point), fields[2])
    return best[1] if best else None


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


# -- targets ----------------------------------------------------------------------------------------


Check = Callable[[Row, dict[str, Row]], bool | None]


def _check(rows: dict[str, Row], key: str, text: str, test: Check) -> None:
    row = rows.get(key)
    if row is None:
        return
    row["target"] = text
    if row.get("error"):
        row["verdict"] = "missed (error)"
        return
    ok = test(row, rows)
    row["verdict"] = "n/a" if ok is None else ("met" if ok else "missed")


def _le(value: Any, limit: float) -> bool | None:
    return None if value is None else bool(value <= limit)


def _throughput_target(row: Row, rows: dict[str, Row]) -> bool | None:
    mine = row.get("throughput_per_s")
    if mine is None:
        return None
    peers = [
        r["throughput_per_s"]
        for key, r in rows.items()
        if key.startswith("pysyncobj/3") and key.endswith("/concurrent") and r.get("throughput_per_s")
    ]
    if not peers:
        row["target_note"] = "PySyncObj not measured in this run: only the 30,000/s half was checked"
        return bool(mine >= 30_000)
    row["target_note"] = f"best PySyncObj 3-node throughput: {max(peers):,.0f}/s"
    return bool(mine >= 30_000 and mine >= max(peers))


def apply_targets(rows: list[Row]) -> None:
    """Mark the rows that have a target with `target` and `verdict` (met / missed / n/a)."""
    by_key = {r["key"]: r for r in rows}

    def seq(r: Row, _: dict[str, Row]) -> bool | None:
        a, b = _le(r.get("p50_ms"), 1.0), _le(r.get("p99_ms"), 5.0)
        return None if a is None or b is None else a and b

    def failover(r: Row, _: dict[str, Row]) -> bool | None:
        a, b = _le(r.get("p50_ms"), 600.0), _le(r.get("max_ms"), 1000.0)
        if a is None or b is None:
            return None
        return a and b and not r.get("note")  # a trial that never recovered misses "max ≤ 1 s"

    def api_leader(r: Row, rows: dict[str, Row]) -> bool | None:
        a, b = _le(r.get("p50_ms"), 1.5), _le(r.get("p99_ms"), 5.0)
        if a is None or b is None:
            return None
        etcd = rows.get("etcd/3/leader")
        if etcd is None or etcd.get("p50_ms") is None:
            r["target_note"] = "etcd not measured in this run: only the absolute half was checked"
            return a and b
        r["target_note"] = (
            f"etcd put via its leader in this run: p50 {etcd['p50_ms']:.3f} ms, p99 {etcd['p99_ms']:.3f} ms"
        )
        return a and b and bool(r["p50_ms"] <= etcd["p50_ms"])

    def api_follower(r: Row, _: dict[str, Row]) -> bool | None:
        return _le(r.get("p50_ms"), 3.0)

    def client_failover(r: Row, rows: dict[str, Row]) -> bool | None:
        a, b = _le(r.get("p50_ms"), 800.0), _le(r.get("max_ms"), 1200.0)
        if a is None or b is None:
            return None
        ok = a and b and not r.get("failed_trials")  # a trial that never recovered misses "max ≤ 1.2 s"
        peers = [rows.get(f"etcd/3/failover-{t}") for t in ("default", "et500")]
        measured = [p for p in peers if p and p.get("p50_ms") is not None and p.get("max_ms") is not None]
        if len(measured) < len(peers):
            r["target_note"] = "etcd failover (both timers) not measured in this run: absolute half only"
            return ok
        r["target_note"] = "etcd in this run: " + ", ".join(
            f"{p['key'].rsplit('-', 1)[1]} p50 {p['p50_ms']:.0f} ms, max {p['max_ms']:.0f} ms"
            for p in measured
        )
        return ok and all(r["p50_ms"] < p["p50_ms"] and r["max_ms"] < p["max_ms"] for p in measured)

    _check(by_key, "commit_latency/3/sequential", "p50 ≤ 1 ms, p99 ≤ 5 ms", seq)
    _check(by_key, "commit_latency/3/concurrent", "≥ 30,000/s and ≥ PySyncObj", _throughput_target)
    _check(by_key, "failover/3", "p50 ≤ 600 ms, max ≤ 1 s", failover)
    _check(by_key, "manager_api/3/leader", "p50 ≤ 1.5 ms, p99 ≤ 5 ms, p50 ≤ etcd's", api_leader)
    _check(by_key, "manager_api/3/follower", "p50 ≤ 3 ms", api_follower)
    failover_text = "p50 ≤ 800 ms, max ≤ 1.2 s, both < etcd's (both timers)"
    _check(by_key, "client_failover/3", failover_text, client_failover)

    def vs_swarm(limit_ms: float, peer: str, also: str | None = None) -> Check:
        def check(r: Row, rows: dict[str, Row]) -> bool | None:
            ok = _le(r.get("max_ms"), limit_ms) if limit_ms else True
            if ok is None or r.get("failed_trials"):
                return False if r.get("failed_trials") else None
            swarm = rows.get(peer)
            if swarm is None or swarm.get("p50_ms") is None:
                r["target_note"] = "Swarm not measured in this run: only the absolute half was checked"
                return ok
            notes = [f"Swarm default p50 {swarm['p50_ms']:.0f} ms"]
            other = rows.get(also) if also else None
            if other is not None and other.get("p50_ms") is not None:
                notes.append(f"Swarm --restart-delay 0s p50 {other['p50_ms']:.0f} ms")
            r["target_note"] = "in this run: " + ", ".join(notes)
            return ok and bool(r["p50_ms"] <= swarm["p50_ms"])

        return check

    _check(
        by_key,
        "containers/crash",
        "max ≤ 2 s, p50 ≤ Swarm's (default settings)",
        vs_swarm(2000.0, "swarm/crash-default", "swarm/crash-delay0"),
    )
    _check(by_key, "containers/create-20", "p50 ≤ Swarm's", vs_swarm(0.0, "swarm/create-20"))

    def within_15s(r: Row, _: dict[str, Row]) -> bool | None:
        if r.get("max_ms") is None:
            return None
        return bool(r["max_ms"] <= 15000 and not r.get("failed_trials"))

    _check(by_key, "worker_failure/process", "max ≤ 15 s", within_15s)


# -- table ------------------------------------------------------------------------------------------

COLUMNS = [
    ("scenario", "scenario"),
    ("what", "what"),
    ("event", "from→to event"),
    ("trials", "trials"),
    ("p50_ms", "p50 ms"),
    ("p90_ms", "p90 ms"),
    ("p99_ms", "p99 ms"),
    ("p99_9_ms", "p99.9 ms"),
    ("max_ms", "max ms"),
    ("throughput_per_s", "throughput /s"),
    ("target", "target"),
    ("verdict", "verdict"),
]


def _cell(row: Row, key: str) -> str:
    value = row.get(key)
    if key == "verdict" and row.get("error"):
        return f"{value or 'error'}: {' '.join(str(row['error']).split())[:100]}"
    if value is None:
        return "—"
    if isinstance(value, str):
        return " ".join(value.split())
    if key == "throughput_per_s":
        return f"{value:,.0f}"
    if key.endswith("_ms"):
        return f"{value:.3f}" if value < 10 else f"{value:.1f}"
    return str(value)


def table_rows(run: dict[str, Any]) -> list[Row]:
    rows: list[Row] = []
    for name, scenario in run["scenarios"].items():
        if scenario.get("status") in ("skipped", "missing"):
            rows.append({"scenario": name, "what": f"{scenario['status']}: {scenario.get('reason')}"})
        elif scenario.get("status") == "error" and not scenario.get("rows"):
            rows.append({"scenario": name, "what": "failed", "error": scenario.get("error")})
        else:
            rows += scenario.get("rows", [])
    return rows


def markdown(run: dict[str, Any]) -> str:
    m = run["machine"]
    dirty = " (dirty)" if m["git_dirty"] else ""
    lines = [
        f"# Benchmarks {run['timestamp']}",
        "",
        f"{m['nproc']} CPUs ({m['cpu_model']}), Python {m['python']}, data on {m['data_dir_fs']}, "
        f"warren_raft {m['warren_raft_version']}, commit {m['git_commit']}{dirty}",
        "",
        "| " + " | ".join(title for _, title in COLUMNS) + " |",
        "|" + "|".join("---" for _ in COLUMNS) + "|",
    ]
    for row in table_rows(run):
        lines.append("| " + " | ".join(_cell(row, key).replace("|", "\\|") for key, _ in COLUMNS) + " |")
    notes = [f"- {r['key']}: {r[k]}" for r in table_rows(run) for k in ("note", "target_note") if r.get(k)]
    if notes:
        lines += ["", *notes]
    carried = [(name, s["carried_from"]) for name, s in run["scenarios"].items() if s.get("carried_from")]
    if carried:
        lines += ["", "Not run this time, kept from earlier runs:"]
        lines += [f"- {name}: run {c.get('timestamp')}, commit {c.get('git_commit')}" for name, c in carried]
    return "\n".join(lines) + "\n"


def text_table(run: dict[str, Any]) -> str:
    rows = [[title for _, title in COLUMNS]]
    rows += [[_cell(r, key) for key, _ in COLUMNS] for r in table_rows(run)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS))]
    out = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    out.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(out) + "\n"


def merged_with_latest(run: dict[str, Any], out_dir: Path) -> dict[str, Any]:
    """This run plus, for each scenario it did not run, that scenario as the previous latest.json has it
    (marked `carried_from`), so running some scenarios does not wipe the others' numbers."""
    try:
        previous = json.loads((out_dir / "latest.json").read_text())
    except (OSError, ValueError):
        return run
    scenarios: dict[str, Any] = {}  # in the previous table's order, scenarios new to it at the end
    for name, scenario in previous.get("scenarios", {}).items():
        if name in run["scenarios"]:
            scenarios[name] = run["scenarios"][name]
        elif isinstance(scenario, dict):
            origin = scenario.get("carried_from") or {
                "timestamp": previous.get("timestamp"),
                "git_commit": previous.get("machine", {}).get("git_commit"),
            }
            scenarios[name] = {**scenario, "carried_from": origin}
    for name, scenario in run["scenarios"].items():
        scenarios.setdefault(name, scenario)
    return {**run, "scenarios": scenarios}


def write(run: dict[str, Any], out_dir: Path) -> Path:
    """bench-<timestamp>.json (this run), latest.json and latest.md (merged by scenario with the previous
    latest) in `out_dir`; returns the timestamped file."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"bench-{run['timestamp']}.json"
    path.write_text(json.dumps(run, indent=2, sort_keys=False, default=str) + "\n")
    latest = merged_with_latest(run, out_dir)
    (out_dir / "latest.json").write_text(json.dumps(latest, indent=2, sort_keys=False, default=str) + "\n")
    (out_dir / "latest.md").write_text(markdown(latest))
    return path
