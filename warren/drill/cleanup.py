"""What the drill's clean-up stops besides its daemons: the processes its service's tasks ran as (process
runtime) and the worker's containers (docker runtime), whatever state the cluster was left in."""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

from warren.errors import WarrenError
from warren.runtime.procfs import is_ours, proc_stat, session_members, signal_group
from warren.runtime.taskdir import read_task_state
from warren.testing.wait import NotYet, WaitTimeout, eventually


def task_process_candidates(tasks_dir: Path) -> dict[int, int | None]:
    """pid -> start time of every process a task ran as: recorded in a state file under `tasks_dir`,
    or running in a task directory (a spawn the worker had no time to record)."""
    found: dict[int, int | None] = {}
    if not tasks_dir.is_dir():
        return found
    for entry in tasks_dir.iterdir():
        state = read_task_state(tasks_dir, entry.name) or {}
        pid, start = state.get("pid"), state.get("pid_start")
        if isinstance(pid, int) and isinstance(start, int) and is_ours(pid, start):
            found[pid] = start
    root = str(tasks_dir.resolve()) + os.sep
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit() and int(proc.name) not in found:
            with contextlib.suppress(OSError):
                if os.readlink(proc / "cwd").startswith(root):
                    found[int(proc.name)] = None
    return found


def kill_task_processes(tasks_dir: Path, timeout_s: float, poll_s: float) -> set[int]:
    """SIGKILL every task process (see task_process_candidates) and wait up to `timeout_s` for them to
    be gone; the pids found."""
    procs = task_process_candidates(tasks_dir)
    for pid in procs:
        # A task runs in a session of its own (pid = session = group): its whole group and any
        # member that moved to another group of the session.
        signal_group(pid, signal.SIGKILL)
        for member in session_members(pid):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(member, signal.SIGKILL)

    def gone() -> bool:
        left = [pid for pid, start in procs.items() if _alive(pid, start)]
        if left:
            raise NotYet(f"task processes {left} still alive")
        return True

    with contextlib.suppress(WaitTimeout):  # the clean-up goes on with what it can stop
        eventually(gone, timeout_s, "task processes gone", poll_s=poll_s, not_yet=(NotYet,))
    return set(procs)


def remove_containers(cluster_id: str, node: str, timeout_s: float) -> None:
    """Remove the worker's containers (labelled with the cluster and the worker's node name)."""
    import asyncio

    from warren.runtime.docker import DockerRuntime  # only a drill of the docker runtime loads the SDK

    async def remove() -> None:
        runtime = DockerRuntime(cluster_id, node)
        try:
            async with asyncio.timeout(timeout_s):
                for instance in await runtime.list():
                    with contextlib.suppress(WarrenError):  # one that cannot go must not keep the rest
                        await runtime.remove(instance.container_id)
        finally:
            await runtime.close()

    with contextlib.suppress(WarrenError, TimeoutError):  # no engine any more: nothing to remove
        asyncio.run(remove())


def _alive(pid: int, start: int | None) -> bool:
    if start is not None:
        return is_ours(pid, start)
    stat = proc_stat(pid)
    return stat is not None and stat[0] not in ("Z", "X", "x")
