"""Workers under chaos, and the check that no replicated slot ever ran two tasks at once.

The workers run the process runtime in namespaces of their own; a sampler scans /proc (every task
process carries WARREN_SERVICE, WARREN_SLOT and WARREN_TASK_ID in its environment) and records each
moment two different tasks of one slot were alive together. Worker faults are shorter than the
managers' grace for a silent worker (5 s), so the cluster never has a reason to run a slot twice.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections import defaultdict

from tests.integration.netns import NetnsLab
from tests.integration.workers import WorkerProc, task_environments

SAMPLE_INTERVAL_S = 0.2


def slot_tasks(service: str) -> dict[str, set[str]]:
    """slot -> the task IDs of `service` with a live process now."""
    found: dict[str, set[str]] = defaultdict(set)
    for env in task_environments(f"WARREN_SERVICE={service}").values():
        found[env.get("WARREN_SLOT", "?")].add(env.get("WARREN_TASK_ID", "?"))
    return found


class DuplicateWatch:
    """A thread sampling `service`'s task processes until stopped; `duplicates` lists each slot seen
    running two tasks at once (slot, task IDs). Use as a context manager."""

    def __init__(self, service: str) -> None:
        self.service = service
        self.samples = 0
        self.duplicates: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="chaos-duplicate-watch", daemon=True)

    def __enter__(self) -> DuplicateWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_INTERVAL_S):
            self.samples += 1
            for slot, tasks in slot_tasks(self.service).items():
                if len(tasks) > 1:
                    self.duplicates.append(f"{time.strftime('%H:%M:%S')} slot {slot}: {sorted(tasks)}")


class ChaosWorker:
    """A worker the nemesis can kill (the agent only: its tasks keep running, as after an agent crash)
    or cut off from every other host, and bring back."""

    def __init__(self, worker: WorkerProc, lab: NetnsLab, host: int) -> None:
        self.worker, self.lab, self.host = worker, lab, host
        self.label = worker.label

    def kill(self) -> None:
        self.worker.kill()

    def cut_off(self) -> None:
        self.lab.isolate(self.host)

    def reconnect(self) -> None:
        self.lab.heal(self.host)

    def ensure_running(self) -> None:
        if not self.worker.alive:
            self.worker.start()  # resumes from its data dir and adopts its tasks

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.worker.kill()
        for pid in self.worker.task_pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
