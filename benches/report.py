"""What a benchmark run reports: machine facts, the results table with targets met or missed (judged
in benches/targets.py), Warren-to-peer ratios, plots (benches/plots.py), and the files: the run's own
bench-<timestamp>.json, and latest.json / latest.md merged with earlier runs' scenarios."""

from __future__ import annotations

import copy
import importlib.metadata
import json
import logging
import os
import platform
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from benches import plots, targets
from benches.targets import Row
from benches.targets import apply_targets as apply_targets  # __main__ calls report.apply_targets
from tests.integration.nodeproc import REPO_ROOT

log = logging.getLogger(__name__)
DOCKER_TIMEOUT_S = 10.0  # `docker version` may wait on an engine that does not answer; seconds


def machine_info(data_dir: Path) -> dict[str, Any]:
    info: dict[str, Any] = {
        "nproc": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "cpu_model": _cpu_model(),
        "memory": _meminfo_total(),
        "python": sys.version.split()[0],
        "python_implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "kernel": platform.release(),
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
    try:
        info["warren_version"] = importlib.metadata.version("warren")
    except importlib.metadata.PackageNotFoundError:
        info["warren_version"] = None
    info["docker_version"] = _docker_version()
    return info


def _docker_version() -> str | None:
    """The Docker Engine's version, or None without a docker CLI or an engine that answers."""
    try:
        out = subprocess.run(
            ["docker", "version", "--format", "{{.Server.Version}}"],
            capture_output=True,
            text=True,
            timeout=DOCKER_TIMEOUT_S,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() or None


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


# -- the tables -------------------------------------------------------------------------------------

# (row field, column title); columns no row has a value for are left out of the table
COLUMNS = [
    ("key", "row"),
    ("what", "what"),
    ("event", "from→to event"),
    ("trials", "trials"),
    ("p50_ms", "p50 ms"),
    ("p90_ms", "p90 ms"),
    ("p99_ms", "p99 ms"),
    ("p99_9_ms", "p99.9 ms"),
    ("max_ms", "max ms"),
    ("throughput_per_s", "throughput /s"),
    ("value_mb", "value"),
    ("value_pct", "% of a core"),
    ("target", "target"),
    ("verdict", "verdict"),
]
EMPTY = "—"
# A scenario that another has replaced is no longer carried from earlier runs once its successor ran.
REPLACED_BY = {"client_failover": "leader_failover", "rss": "footprint"}


def number(field: str, value: float) -> str:
    """A row's number as the tables show it: ms to 3 decimals below 10, throughput with separators."""
    if field == "throughput_per_s":
        return f"{value:,.0f}"
    if field.endswith("_mb"):
        return f"{value:.1f} MB"
    if field.endswith("_pct"):
        return f"{value:.2f} %"
    return f"{value:.3f}" if value < 10 else f"{value:.1f}"


def _metric_name(field: str) -> str:
    """A row field as a column title names it: p50_ms → p50 ms."""
    return dict(COLUMNS).get(field, field)


def _cell(row: Row, field: str) -> str:
    value = row.get(field)
    if field == "verdict" and row.get("error"):
        return f"{value or 'error'}: {' '.join(str(row['error']).split())[:100]}"
    if field == "trials" and value is not None and row.get("failed_trials"):
        return f"{value} ({row['failed_trials']} failed)"
    if value is None:
        return EMPTY
    if isinstance(value, str):
        return " ".join(value.split())
    if isinstance(value, int | float) and not isinstance(value, bool) and field != "trials":
        return number(field, value)
    return str(value)


def table_rows(run: dict[str, Any]) -> list[Row]:
    """The table: every scenario's rows; a scenario that was skipped, missing or failed without rows
    becomes one row saying so (a peer that cannot start is reported, never dropped)."""
    rows: list[Row] = []
    for name, scenario in run["scenarios"].items():
        if scenario.get("status") in ("skipped", "missing"):
            rows.append({"key": name, "what": f"{scenario['status']}: {scenario.get('reason')}"})
        elif scenario.get("status") == "error" and not scenario.get("rows"):
            rows.append({"key": name, "what": "failed", "error": scenario.get("error")})
        else:
            rows += scenario.get("rows", [])
    return rows


def _results(rows: list[Row]) -> tuple[list[str], list[list[str]]]:
    cells = [[_cell(r, field) for field, _ in COLUMNS] for r in rows]
    keep = [i for i, (field, _) in enumerate(COLUMNS) if field == "key" or any(c[i] != EMPTY for c in cells)]
    return [COLUMNS[i][1] for i in keep], [[c[i] for i in keep] for c in cells]


def _ratios(rows: list[Row]) -> tuple[list[str], list[list[str]]]:
    headers = ["Warren row", "peer row", "metric", "Warren", "peer", "Warren ÷ peer", "ahead"]
    body = []
    for r in targets.ratios(rows):
        metric = _metric_name(r.field)
        if r.ratio is None or r.warren_value is None or r.peer_value is None:
            body.append([r.warren, r.peer, EMPTY, EMPTY, EMPTY, r.missing or "peer value is 0", EMPTY])
            continue
        ahead = "Warren" if r.warren_ahead else ("peer" if r.ratio != 1 else "even")
        metric += f" ({'higher' if r.higher_is_better else 'lower'} is better)"
        body.append(
            [
                r.warren,
                r.peer,
                metric,
                number(r.field, r.warren_value),
                number(r.field, r.peer_value),
                f"{r.ratio:.2f}×",
                ahead,
            ]
        )
    return headers, body


def _markdown_table(headers: list[str], body: list[list[str]]) -> list[str]:
    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    return [line(headers), "|" + "|".join("---" for _ in headers) + "|", *(line(r) for r in body)]


def text_grid(headers: list[str], body: list[list[str]]) -> list[str]:
    """Columns padded to their widest cell, a dashed line under the headers."""
    widths = [max(len(r[i]) for r in [headers, *body]) for i in range(len(headers))]
    out = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in [headers, *body]]
    out.insert(1, "  ".join("-" * w for w in widths))
    return out


def _mib(meminfo: str | None) -> str | None:
    parts = (meminfo or "").split()
    if len(parts) == 2 and parts[0].isdigit() and parts[1] == "kB":
        return f"{int(parts[0]) / 1024**2:.1f} GiB RAM"
    return f"{meminfo} RAM" if meminfo else None


def machine_line(m: dict[str, Any]) -> str:
    """The machine in one line: CPU, cores, memory, kernel, Python, Docker, filesystem, versions, commit."""
    cores = f"{m.get('nproc')} cores"
    if m.get("usable_cpus") not in (None, m.get("nproc")):
        cores += f" ({m['usable_cpus']} usable)"
    kernel = f"Linux {m['kernel']}" if m.get("kernel") else m.get("platform")
    python = f"Python {m.get('python')}" + (
        f" ({m['python_implementation']})" if m.get("python_implementation") else ""
    )
    docker = f"Docker {m['docker_version']}" if m.get("docker_version") else None
    fs = f"data on {m['data_dir_fs']}" if m.get("data_dir_fs") else None
    versions = ", ".join(
        f"{name} {m[f'{name}_version']}" for name in ("warren", "warren_raft") if m.get(f"{name}_version")
    )
    commit = m.get("git_commit")
    commit_text = f"commit {commit[:12]}{' (dirty)' if m.get('git_dirty') else ''}" if commit else None
    parts = [
        m.get("cpu_model"),
        cores,
        _mib(m.get("memory")),
        kernel,
        python,
        docker,
        fs,
        versions,
        commit_text,
    ]
    return " · ".join(str(p) for p in parts if p)


def _notes(rows: list[Row]) -> list[str]:
    notes = [f"- {r['key']}: {r[k]}" for r in rows for k in ("note", "target_note") if r.get(k)]
    unplotted = [
        r["key"]
        for r in rows
        if any(p.select(r["key"]) for p in plots.plots()) and not r.get("samples_ms") and not r.get("error")
    ]
    if unplotted:
        notes.append(f"- not in the plots (no raw samples in these results): {', '.join(unplotted)}")
    return notes


def markdown(run: dict[str, Any], plot_files: list[Path] | None = None, plot_note: str | None = None) -> str:
    """The report: machine, results table, Warren-to-peer ratios, plots (linked by file name, so they
    sit next to the report), notes, and which scenarios were carried from earlier runs."""
    rows = table_rows(run)
    lines = [
        f"# Benchmarks {run['timestamp']}",
        "",
        f"**Machine:** {machine_line(run['machine'])}",
        "",
        "## Results",
        "",
        "Times in milliseconds, lower is better; `trials` counts samples (for latency rows: operations).",
        "",
        *_markdown_table(*_results(rows)),
        "",
        "## Warren and its peers",
        "",
        "Same machine, same procedure. Ratio = Warren ÷ peer: below 1 Warren is faster (times), above 1 "
        "Warren does more (throughput).",
        "",
        *_markdown_table(*_ratios(rows)),
        "",
        "## Plots",
        "",
    ]
    titles = {p.file: p.title for p in plots.plots()}
    for path in plot_files or []:
        lines += [f"![{titles.get(path.name, path.stem)}]({path.name})", ""]
    if plot_note:
        lines += [plot_note, ""]
    elif not plot_files:
        lines += ["No plots: no row in these results carries raw samples.", ""]
    notes = _notes(rows)
    if notes:
        lines += ["## Notes", "", *notes, ""]
    carried = [(name, s["carried_from"]) for name, s in run["scenarios"].items() if s.get("carried_from")]
    if carried:
        lines += ["## Carried from earlier runs", "", "Not run this time, kept from earlier runs:", ""]
        lines += [f"- {name}: run {c.get('timestamp')}, commit {c.get('git_commit')}" for name, c in carried]
    return "\n".join(lines).rstrip("\n") + "\n"


def text_table(run: dict[str, Any]) -> str:
    """The results table and the ratios, for a terminal."""
    rows = table_rows(run)
    out = text_grid(*_results(rows))
    out += ["", "Warren ÷ peer (same machine, same procedure):", *text_grid(*_ratios(rows))]
    return "\n".join(out) + "\n"


# -- files ------------------------------------------------------------------------------------------

_INLINE = "@@benches-inline-{}@@"


def dumps(data: Any) -> str:
    """JSON with 2-space indents, except that a list of numbers (a row's `samples_ms`, a config's
    sizes) stays on one line: the file stays readable and diffable without a line per sample."""
    inline: list[str] = []

    def walk(x: Any) -> Any:
        if isinstance(x, dict):
            return {k: walk(v) for k, v in x.items()}
        if isinstance(x, list | tuple):
            if x and all(isinstance(v, int | float) and not isinstance(v, bool) for v in x):
                inline.append(json.dumps(list(x), separators=(",", ":")))
                return _INLINE.format(len(inline) - 1)
            return [walk(v) for v in x]
        return x

    text = json.dumps(walk(data), indent=2, default=str, ensure_ascii=False)
    return re.sub(r'"@@benches-inline-(\d+)@@"', lambda m: inline[int(m.group(1))], text)


def merged_with_latest(run: dict[str, Any], out_dir: Path) -> dict[str, Any]:
    """This run plus, for each scenario it did not run, that scenario as the previous latest.json has it
    (marked `carried_from`), so running some scenarios does not wipe the others' numbers. A scenario
    replaced by another (REPLACED_BY) is dropped once its successor is in the table."""
    try:
        previous = json.loads((out_dir / "latest.json").read_text(encoding="utf-8"))
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
    for old, new in REPLACED_BY.items():
        if new in scenarios and old in scenarios and old not in run["scenarios"]:
            del scenarios[old]
    return {**run, "scenarios": scenarios}


def write(run: dict[str, Any], out_dir: Path) -> Path:
    """bench-<timestamp>.json (this run), then latest.json, latest.md and its plots (merged by scenario
    with the previous latest, targets judged again on the merged table) in `out_dir`; returns the
    timestamped file."""
    out_dir.mkdir(parents=True, exist_ok=True)
    apply_targets(targets.rows_of(run))
    path = out_dir / f"bench-{run['timestamp']}.json"
    path.write_text(dumps(run) + "\n", encoding="utf-8")
    write_latest(copy.deepcopy(merged_with_latest(run, out_dir)), out_dir)  # re-judging must not touch `run`
    return path


def write_latest(latest: dict[str, Any], out_dir: Path) -> Path:
    """Judge `latest` by today's targets, then write latest.json, the plots and latest.md (returned)."""
    apply_targets(targets.rows_of(latest))
    (out_dir / "latest.json").write_text(dumps(latest) + "\n", encoding="utf-8")
    plot_note = None
    written: list[Path] = []
    reason = plots.unavailable()
    if reason is not None:
        plot_note = f"Plots not drawn: {reason}."
    else:
        try:
            written = plots.write(latest, out_dir)
        except (
            OSError,
            ValueError,
            RuntimeError,
        ) as exc:  # the numbers are saved; say why the pictures are not
            log.warning("plots failed: %s", exc)
            plot_note = f"Plots not drawn: {type(exc).__name__}: {exc}."
    md = out_dir / "latest.md"
    md.write_text(markdown(latest, written, plot_note), encoding="utf-8")
    return md


def main(argv: list[str] | None = None) -> int:
    """`python -m benches.report [DIR]`: redraw DIR/latest.md and its plots from DIR/latest.json (after a
    change to the targets or the report, without running anything)."""
    out_dir = Path(argv[0]) if argv else Path(__file__).resolve().parent / "results"
    try:
        latest = json.loads((out_dir / "latest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        sys.stderr.write(f"report: cannot read {out_dir / 'latest.json'}: {exc}\n")
        return 2
    if not isinstance(latest, dict) or not isinstance(latest.get("scenarios"), dict):
        sys.stderr.write(f"report: {out_dir / 'latest.json'} is not a benchmark result\n")
        return 2
    sys.stdout.write(f"{write_latest(latest, out_dir)}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
