"""The benchmark suite keeps working: `python -m benches --smoke` (every scenario, tiny) end to end.

Its numbers are not judged here (a busy CI machine says nothing about Warren's speed); what is checked is
that every scenario ran, or says why it could not, wrote every trial's raw numbers, and that the report,
the plots and `compare` come out of it. Under CI every peer must run: a missing etcd or Swarm there is a
broken set-up, not a skip. A SIGTERM of a run leaves no process or container behind.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

from benches.__main__ import scenario_names
from tests.integration.images import ensure_image
from tests.integration.nodeproc import REPO_ROOT, processes_under
from warren.testing.wait import eventually

IN_CI = bool(os.environ.get("CI"))
SCENARIOS = scenario_names()  # every one of them, in the suite's order
SmokeRun = tuple[Path, "subprocess.CompletedProcess[str]"]  # the results dir and the finished run


def benches(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "benches", *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory: pytest.TempPathFactory) -> SmokeRun:
    ensure_image()  # the Docker scenarios run it (and `make bench` builds it first): on a fresh machine
    out = tmp_path_factory.mktemp("bench-out")
    return out, benches("--smoke", "--out", str(out), timeout=1500)


def _run_file(out: Path) -> Path:
    files = sorted(out.glob("bench-*.json"))
    assert len(files) == 1, f"expected one run file in {out}: {files}"
    return files[0]


@pytest.mark.timeout(1600)
def test_every_scenario_runs_or_says_why_not(smoke_run: SmokeRun) -> None:
    out, done = smoke_run
    assert done.returncode == 0, done.stderr[-4000:]
    run = json.loads(_run_file(out).read_text())
    assert run["profile"] == "smoke"
    assert run["machine"]["nproc"] >= 1
    assert run["timers"]["raft"]["election_timeout_min_s"] > 0
    assert list(run["scenarios"]) == list(SCENARIOS)
    problems: list[str] = []
    for name, scenario in run["scenarios"].items():
        status = scenario.get("status")
        if status == "missing" and not IN_CI:
            assert scenario.get("reason"), f"{name} is missing without a reason"
            continue
        if status != "ok":
            problems.append(f"{name}: {status}: {scenario.get('error') or scenario.get('reason')}")
            continue
        assert scenario["wall_s"] <= scenario["budget_s"]
        for row in scenario["rows"]:
            if row.get("skipped"):  # a part that could not be measured here says why (networking)
                assert str(row["skipped"]).strip(), f"{row['key']} skipped without a reason"
                continue
            if row.get("error") or row.get("failed_trials"):
                problems.append(f"{row['key']}: {row.get('error') or row.get('note')}")
            raw = row.get("samples_ms") or row.get("samples_mb")
            if not raw:
                problems.append(f"{row['key']}: no raw numbers")
    assert not problems, "\n".join(problems) + "\n" + done.stderr[-4000:]


@pytest.mark.timeout(1600)
def test_the_report_has_the_table_the_ratios_and_the_plots(
    smoke_run: SmokeRun,
) -> None:
    out, done = smoke_run
    assert done.returncode == 0, done.stderr[-2000:]
    markdown = (out / "latest.md").read_text()
    assert "| row | what | from→to event |" in markdown
    assert "## Warren and its peers" in markdown and "etcd/3/failover-default" in markdown
    assert "leader_failover/sigkill" in markdown
    pngs = sorted(out.glob("*.png"))
    assert pngs, f"no plot in {out}"
    for png in pngs:
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert png.name in markdown  # embedded in the report
    assert "leader_failover/sigkill" in done.stdout  # the table on stdout


@pytest.mark.timeout(1600)
def test_compare_flags_a_slower_run_and_accepts_the_same_one(
    smoke_run: SmokeRun, tmp_path: Path
) -> None:
    out, done = smoke_run
    assert done.returncode == 0, done.stderr[-2000:]
    path = _run_file(out)
    same = benches("compare", str(path), str(path), timeout=60)
    assert same.returncode == 0, same.stdout + same.stderr
    run: dict[str, Any] = json.loads(path.read_text())
    run["timestamp"] = "20991231T000000Z"  # another run (compare calls rows of one run "same run")
    for scenario in run["scenarios"].values():
        for row in scenario.get("rows", []):
            if row.get("samples_ms"):
                row["samples_ms"] = [10 * v + 1000 for v in row["samples_ms"]]
                for key in ("p50_ms", "p90_ms", "p99_ms", "max_ms"):
                    if row.get(key) is not None:
                        row[key] = 10 * row[key] + 1000
    slower = tmp_path / "slower.json"
    slower.write_text(json.dumps(run))
    worse = benches("compare", str(path), str(slower), timeout=60)
    assert worse.returncode == 1, worse.stdout + worse.stderr
    assert "regression" in worse.stdout


@pytest.mark.timeout(300)
def test_a_sigterm_mid_scenario_leaves_nothing_behind(tmp_path: Path) -> None:
    root = Path(tempfile.gettempdir())
    before = {p.name for p in root.glob("warren-bench-*")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "benches", "--smoke", "--only", "worker_failure", "--out", str(tmp_path)],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    try:

        def task_started() -> Path | None:
            """The run's work dir once task processes run (a `sleep` in a worker's data dir): then
            everything is up to clean."""
            assert proc.poll() is None, "the run ended before it started a task"
            new = [p for p in root.glob("warren-bench-*") if p.name not in before]
            started = processes_under(new[0]) if new else []
            return new[0] if any("sleep" in p and "worker start" not in p for p in started) else None

        work_dir = eventually(task_started, 120, "the run to start a task", poll_s=0.1)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, err[-3000:]
    assert processes_under(work_dir) == []
    assert not work_dir.exists()
