"""Smoke test of `warren worker start` against a real manager, with the process runtime: it joins and
says so, runs its tasks, leaves them running when stopped, adopts them when started again (no
duplicates, no token needed), and reports a crashed task at once so the leader replaces it."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from tests.integration.workers import fleets, task_processes
from warren.testing.wait import eventually

SPEC = {"image": "local", "driver": "process", "command": ["sleep", "100000"]}


def test_worker_joins_runs_adopts_and_reports_exits(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    with fleets(tmp_path, request) as make:
        fleet = make()
        fleet.start_managers(1)
        addr = fleet.addr
        worker = fleet.add_worker("process")
        # The node is ready once joined; its first session call (and line) may come a little later.
        eventually(lambda: f"✓ Connected to manager {addr}" in worker.output(), 30, "the worker to connect",
                 detail=worker.log_tail)
        lines = worker.output().splitlines()
        assert lines[0].startswith("✓ Worker joined cluster cluster-")
        assert lines[0].endswith(f"(Node ID: {worker.name})")
        assert lines[1] == "✓ Runtime: process"
        assert lines[2] == f"✓ Connected to manager {addr}"

        fleet.create("smoke", replicas=2, **SPEC)
        tasks = fleet.wait_running("smoke", 2)
        assert {t["node"] for t in tasks} == {worker.name}
        pids = sorted(worker.task_pids())
        assert len(pids) == 2

        # SIGTERM stops the agent, not its tasks.
        assert worker.stop() == 0
        assert sorted(worker.task_pids()) == pids

        # Started again on its data dir: no token, same node, the same processes adopted.
        worker.start()
        eventually(lambda: f"✓ Connected to manager {addr}" in worker.output(), 30, "the worker to reconnect",
                 detail=worker.log_tail)
        assert "✓ Worker resumed in cluster cluster-" in worker.output()
        again = fleet.wait_running("smoke", 2)
        assert {t["id"] for t in again} == {t["id"] for t in tasks}
        assert sorted(worker.task_pids()) == pids

        # A crashed task is reported failed at once (not at a heartbeat) and replaced by a new task.
        victim = again[0]
        [pid] = task_processes(f"WARREN_TASK_ID={victim['id']}")
        killed = time.monotonic()
        os.kill(pid, signal.SIGKILL)

        def failed() -> dict[str, object] | None:
            [task] = [t for t in fleet.tasks("smoke") if t["id"] == victim["id"]]
            return task if task["state"] == "failed" else None

        task = eventually(failed, 10, "the killed task reported failed", poll_s=0.01, detail=fleet.log_tails)
        reported_s = time.monotonic() - killed
        assert str(task["message"]).startswith("exited")
        assert reported_s < 1.0, f"the exit took {reported_s:.2f} s to reach the leader"
        replaced = fleet.wait_running("smoke", 2)
        assert victim["id"] not in {t["id"] for t in replaced}
        assert len(worker.task_pids()) == 2
