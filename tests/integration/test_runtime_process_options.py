"""ProcessRuntime with real processes and container options: the ones it has an equivalent for (user,
workdir, stop signal, ulimits) reach the process; the others are refused with the scheduler's words.

Every process a test starts is SIGKILLed (with its whole session) at teardown.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from warren.runtime.base import DeviceMapping, Exit, RuntimeStartError, TaskRun
from warren.runtime.process import ProcessRuntime
from warren.runtime.procfs import is_ours, proc_stat, session_members
from warren.runtime.taskdir import LOG_FILE, STATE_FILE
from warren.spec.container import ContainerOptions, Ulimit
from warren.testing.wait import eventually_async


@pytest.fixture
def anyio_backend() -> Any:
    return ("asyncio", {"use_uvloop": True})  # what workers run on


@pytest.fixture
def base_dir(tmp_path: Path) -> Iterator[Path]:
    base = tmp_path / "tasks"
    yield base
    for state_file in base.glob(f"*/{STATE_FILE}"):
        state = json.loads(state_file.read_text())
        pid, start = state["pid"], state["pid_start"]
        if is_ours(pid, start) or proc_stat(pid) is None:
            for member in [pid, *session_members(pid)]:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(member, signal.SIGKILL)


@pytest.fixture
async def runtime(base_dir: Path) -> AsyncIterator[ProcessRuntime]:
    rt = ProcessRuntime("cluster-test", "node-a", str(base_dir))
    yield rt
    await rt.close()


def task(task_id: str, script: str, options: ContainerOptions, **extra: Any) -> TaskRun:
    return TaskRun(task_id=task_id, service_id="svc-1", service_name="hub", slot=1, image="local",
                   command=["sh", "-c", script], env={}, options=options, **extra)


async def output(base_dir: Path, task_id: str, lines: int) -> list[str]:
    log = base_dir / task_id / LOG_FILE

    def enough() -> list[str] | None:
        text = log.read_text().splitlines() if log.exists() else []
        return text if len(text) >= lines else None

    return await eventually_async(enough, 10, "the task's output")


async def test_workdir_ulimits_and_stop_signal_reach_the_process(
    runtime: ProcessRuntime, base_dir: Path
) -> None:
    options = ContainerOptions(workdir="/tmp", ulimits={"nofile": Ulimit(soft=512, hard=1024)},
                               stop_signal="SIGINT")
    script = "trap 'echo interrupted; exit 0' INT; pwd; ulimit -n; ulimit -Hn; echo ready; " \
             "while true; do sleep 0.1; done"
    cid = await runtime.start(task("t-opts", script, options))
    assert await output(base_dir, "t-opts", 4) == ["/tmp", "512", "1024", "ready"]
    exits = runtime.exits()
    await runtime.stop(cid, 20.0)  # SIGINT, trapped: no need of the 20 s and SIGKILL
    ex: Exit = await anext(exits)
    assert ex.exit_code == 0
    assert (await output(base_dir, "t-opts", 5))[-1] == "interrupted"


@pytest.mark.skipif(os.geteuid() != 0, reason="only root may run a task as another user")
async def test_user_runs_the_process_as_that_user(runtime: ProcessRuntime, base_dir: Path) -> None:
    options = ContainerOptions(user="65534:65534", workdir="/")
    cid = await runtime.start(task("t-user", "id -u; id -g; id -G; sleep 300", options))
    assert await output(base_dir, "t-user", 3) == ["65534", "65534", "65534"]  # no group of root's kept
    # Its health checks run as it too.
    assert await runtime.exec(cid, ["sh", "-c", '[ "$(id -u)" = 65534 ]'], 5) == 0


async def test_what_it_cannot_do_is_refused(runtime: ProcessRuntime) -> None:
    for options, what in [
        (ContainerOptions(read_only=True, cap_add=["NET_ADMIN"]), "container.read_only, container.cap_add"),
        (ContainerOptions(network="host"), "container.network"),
        (ContainerOptions(privileged=True), "container.privileged"),
    ]:
        with pytest.raises(RuntimeStartError, match=f"^{what}: not supported by the process runtime$"):
            await runtime.start(task("t-no", "true", options))
    with pytest.raises(RuntimeStartError, match="container.devices: not supported"):
        await runtime.start(task("t-no", "true", ContainerOptions(),
                                 devices=(DeviceMapping("/dev/null", "/dev/null"),)))
    with pytest.raises(RuntimeStartError, match="user 'no-such-user-here' is not known"):
        await runtime.start(task("t-no", "true", ContainerOptions(user="no-such-user-here")))
    runtime._prlimit = None  # a worker without util-linux
    with pytest.raises(RuntimeStartError, match="ulimits need util-linux prlimit"):
        await runtime.start(task("t-no", "true", ContainerOptions(ulimits={"nproc": Ulimit(soft=1, hard=1)})))
    assert await runtime.list() == []
