"""`warren drill` end to end, as an operator runs it: `python -m warren drill` as a subprocess (process
runtime), on a cluster it forms itself. Each run gets its own TMPDIR, so "the drill's temp dir is gone"
is "TMPDIR is empty", and "nothing it started is alive" is checked both by the pids it reports
(`-o json`) and by scanning /proc for any process whose command line or working directory lies under
that TMPDIR (every manager and worker names its data dir; every task process runs in its task dir).
The caller's WARREN_CONFIG_DIR (`user_config`, outside TMPDIR) must stay untouched: the drill writes its
cluster's admin certificate into its own directory, which goes with it.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

from tests.integration.managers import child_env
from tests.integration.nodeproc import REPO_ROOT, processes_under
from warren.testing.wait import eventually

RUN_TIMEOUT_S = 120.0
DRILL = [sys.executable, "-m", "warren", "drill"]


def user_config(tmp: Path) -> Path:
    """The caller's config dir in these runs: where the CLI would look for admin certificates."""
    return tmp.with_name(tmp.name + "-user-config")


def drill_env(tmp: Path) -> dict[str, str]:
    env = child_env()
    env.pop("WARREN_MANAGER", None)
    env["TMPDIR"] = str(tmp)
    env["WARREN_CONFIG_DIR"] = str(user_config(tmp))
    return env


def run_drill(tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*DRILL, *args], capture_output=True, text=True, timeout=RUN_TIMEOUT_S,
                          cwd=REPO_ROOT, env=drill_env(tmp), stdin=subprocess.DEVNULL)


def alive(pid: int) -> bool:
    """Whether `pid` runs (not a zombie)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except OSError:
        return False


def assert_nothing_left(tmp: Path, output: str) -> None:
    assert processes_under(tmp) == [], output
    assert list(tmp.iterdir()) == [], f"the drill left {list(tmp.iterdir())}\n{output}"
    assert not user_config(tmp).exists(), f"the drill wrote into the caller's config dir\n{output}"


def test_drill_passes_every_step_and_leaves_nothing_behind(tmp_path: Path) -> None:
    done = run_drill(tmp_path)
    output = f"--- stdout ---\n{done.stdout}--- stderr ---\n{done.stderr}"
    assert done.returncode == 0, output
    lines = done.stdout.splitlines()
    steps = [line for line in lines if line.startswith(("✓", "✗", "-"))]
    titles = ["Cluster started", "New leader elected", "Services kept running", "Writes succeed",
              "Failed manager restarted", "Manager rejoined"]
    assert [line.split(":", 1)[0] for line in steps] == [f"✓ {t}" for t in titles], output
    assert all(line.rstrip().endswith(("ms)", " s)")) for line in steps), output
    assert lines[-1].startswith("Drill passed: 6/6 steps in "), output
    assert "same task IDs, same PIDs" in steps[2], output
    assert done.stderr == "", output
    assert_nothing_left(tmp_path, output)


def test_drill_json_with_sigterm_reports_every_pid_and_stops_them_all(tmp_path: Path) -> None:
    done = run_drill(tmp_path, "--kill", "sigterm", "-o", "json")
    output = f"--- stdout ---\n{done.stdout}--- stderr ---\n{done.stderr}"
    assert done.returncode == 0, output
    result = json.loads(done.stdout)
    assert result["passed"] is True and result["verdict"].startswith("Drill passed: 6/6"), output
    assert [s["status"] for s in result["steps"]] == ["passed"] * 6, output
    assert result["steps"][1]["details"]["signal"] == "SIGTERM"
    assert all(isinstance(s["duration_ms"], float) for s in result["steps"]), output
    roles = sorted(p["role"] for p in result["processes"])
    assert roles == ["manager"] * 3 + ["worker"], output
    # the failed manager ran twice; 3 task processes (2 replicas, then scaled to 3) besides the daemons
    assert len(result["pids"]) == 3 + 1 + 1 + 3, output
    assert [pid for pid in result["pids"] if alive(pid)] == [], output
    assert result["kept"] is False and not Path(result["data_dir"]).exists()
    assert_nothing_left(tmp_path, output)


def test_a_frozen_leader_does_not_get_the_workers_tasks_replaced(tmp_path: Path) -> None:
    """SIGSTOP of the leader: the worker's session call to it hangs. The worker must find another
    manager before the new leader's node-down grace runs out, or its tasks are replaced (step 3)."""
    done = run_drill(tmp_path, "--kill", "sigstop", "-o", "json")
    output = f"--- stdout ---\n{done.stdout}--- stderr ---\n{done.stderr}"
    assert done.returncode == 0, output
    result = json.loads(done.stdout)
    assert [s["status"] for s in result["steps"]] == ["passed"] * 6, output
    assert result["steps"][1]["details"]["signal"] == "SIGSTOP"
    assert_nothing_left(tmp_path, output)


def test_sigterm_mid_drill_stops_everything_it_started(tmp_path: Path) -> None:
    proc = subprocess.Popen([*DRILL], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=REPO_ROOT, env=drill_env(tmp_path), stdin=subprocess.DEVNULL)
    try:
        assert proc.stdout is not None
        seen = []
        for line in proc.stdout:  # blocks until the drill prints: no sleep
            seen.append(line)
            if line.startswith("✓ Cluster started"):
                break
        assert seen and seen[-1].startswith("✓ Cluster started"), "".join(seen)
        # Managers, the worker and its task processes run now, or within moments: a task the API reports
        # running can be between fork and exec, or being restarted, at the instant of one /proc scan.
        eventually(lambda: len(processes_under(tmp_path)) >= 3 + 1 + 2, 10,
                   "the drill's managers, worker and task processes", poll_s=0.05,
                   detail=lambda: "\n".join(processes_under(tmp_path)))
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    output = f"--- stdout ---\n{''.join(seen)}{stdout}--- stderr ---\n{stderr}"
    assert proc.returncode == 130, output
    assert stderr.strip() == "warren: drill interrupted; every process it started was stopped", output
    assert_nothing_left(tmp_path, output)


def test_sigterm_while_the_cluster_forms_stops_everything_it_started(tmp_path: Path) -> None:
    proc = subprocess.Popen([*DRILL], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=REPO_ROOT, env=drill_env(tmp_path), stdin=subprocess.DEVNULL)
    try:
        assert proc.stdout is not None
        header = proc.stdout.readline()
        assert header.startswith("Failover drill on this machine"), header
        # until the first manager has been spawned (no event to wait on)
        eventually(lambda: processes_under(tmp_path), 30, "the drill's first manager", poll_s=0.02)
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    output = f"--- stdout ---\n{header}{stdout}--- stderr ---\n{stderr}"
    assert proc.returncode == 130, output
    assert_nothing_left(tmp_path, output)


def test_a_bad_flag_is_a_usage_error_on_one_line(tmp_path: Path) -> None:
    done = run_drill(tmp_path, "--kill", "sighup")
    assert done.returncode == 2, done
    assert done.stdout == ""
    assert len(done.stderr.splitlines()) == 1 and "--kill" in done.stderr, done.stderr
    assert list(tmp_path.iterdir()) == []
