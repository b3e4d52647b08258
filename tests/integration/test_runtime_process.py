"""ProcessRuntime with real processes: lifecycle, process groups, logs, exec, adoption after a worker
restart (exit seen through a pidfd) and a reused pid that must not be taken for the task's process.

Every process a test starts is SIGKILLed (with its whole session) at teardown.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Awaitable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.managers import child_env
from warren.config import RuntimeSettings
from warren.errors import NotFoundError
from warren.runtime.base import (
    LABEL_CLUSTER,
    LABEL_NODE,
    LABEL_SERVICE,
    LABEL_SERVICE_NAME,
    LABEL_SLOT,
    LABEL_TASK,
    Exit,
    PortMapping,
    RuntimeStartError,
    TaskRun,
)
from warren.runtime.process import ProcessRuntime
from warren.runtime.procfs import is_ours, proc_stat, session_members
from warren.runtime.taskdir import LOG_FILE, STATE_FILE
from warren.testing.wait import eventually_async

CLUSTER = "cluster-test"
MIB = 1024 * 1024


# uvloop is what workers run on; the standard loop is what the rest of asyncio's users get.
@pytest.fixture(params=[pytest.param(("asyncio", {"use_uvloop": True}), id="uvloop"), "asyncio"])
def anyio_backend(request: pytest.FixtureRequest) -> Any:
    return request.param


@pytest.fixture
def base_dir(tmp_path: Path) -> Iterator[Path]:
    """The task dirs' parent; every live task process (and its session) is killed afterwards."""
    base = tmp_path / "tasks"
    yield base
    for state_file in base.glob(f"*/{STATE_FILE}"):
        state = json.loads(state_file.read_text())
        kill_session(state["pid"], state["pid_start"])


@pytest.fixture
async def runtime(base_dir: Path) -> AsyncIterator[ProcessRuntime]:
    rt = ProcessRuntime(CLUSTER, "node-a", str(base_dir))
    yield rt
    await rt.close()


def kill_session(pid: int, start: int | None) -> None:
    if not is_ours(pid, start) and proc_stat(pid) is not None:
        return  # the pid is someone else's now
    for member in [pid, *session_members(pid)]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(member, signal.SIGKILL)


def alive(pid: int) -> bool:
    stat = proc_stat(pid)
    return stat is not None and stat[0] != "Z"


def task(task_id: str, command: list[str], *, slot: int | None = 1, **extra: Any) -> TaskRun:
    return TaskRun(
        task_id=task_id,
        service_id="svc-1",
        service_name="web",
        slot=slot,
        image="",
        command=command,
        env=extra.pop("env", {}),
        **extra,
    )


def state_of(base_dir: Path, task_id: str) -> dict[str, Any]:
    return dict(json.loads((base_dir / task_id / STATE_FILE).read_text()))


async def next_exit(exits: AsyncIterator[Exit], timeout: float = 10.0) -> Exit:
    return await asyncio.wait_for(exits.__anext__(), timeout)


async def test_start_runs_a_labelled_process_in_its_own_session(
    runtime: ProcessRuntime, base_dir: Path
) -> None:
    before = time.time()
    cid = await runtime.start(task("t-run", ["sleep", "300"], slot=2, env={"GREETING": "hi"}))
    assert cid == "proc-t-run"

    [inst] = await runtime.list()
    assert (inst.task_id, inst.container_id, inst.running, inst.exit_code) == ("t-run", cid, True, None)
    assert inst.started_at is not None and before - 1 <= inst.started_at <= time.time() + 1
    assert inst.labels == {
        LABEL_CLUSTER: CLUSTER,
        LABEL_NODE: "node-a",
        LABEL_SERVICE: "svc-1",
        LABEL_SERVICE_NAME: "web",
        LABEL_TASK: "t-run",
        LABEL_SLOT: "2",
    }
    state = state_of(base_dir, "t-run")
    pid = state["pid"]
    stat = proc_stat(pid)
    assert stat is not None and stat[2] == state["pid_start"]
    assert stat[1] == pid  # session leader: it outlives the worker and owns its process group
    assert os.getpgid(pid) == pid
    assert os.readlink(f"/proc/{pid}/cwd") == str(base_dir / "t-run")
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    assert b"GREETING=hi" in environ
    assert not any(line.startswith(b"PYTEST_") for line in environ)  # the worker's env is not passed on
    assert oct(os.stat(base_dir / "t-run").st_mode & 0o777) == oct(0o700)


async def test_a_running_task_is_not_started_twice(runtime: ProcessRuntime) -> None:
    await runtime.start(task("t-once", ["sleep", "300"]))
    with pytest.raises(RuntimeStartError, match="already running"):
        await runtime.start(task("t-once", ["sleep", "300"]))


async def test_exit_codes_are_reported(runtime: ProcessRuntime, base_dir: Path) -> None:
    exits = runtime.exits()
    started = time.monotonic()
    cid = await runtime.start(task("t-exit", ["sh", "-c", "exit 3"]))
    ex = await next_exit(exits)
    assert (ex.task_id, ex.container_id, ex.exit_code) == ("t-exit", cid, 3)
    assert time.monotonic() - started < 2

    killed = await runtime.start(task("t-killed", ["sleep", "300"], slot=2))
    os.kill(state_of(base_dir, "t-killed")["pid"], signal.SIGKILL)
    ex = await next_exit(exits)
    assert (ex.container_id, ex.exit_code) == (killed, 128 + signal.SIGKILL)

    by_task = {i.task_id: i for i in await runtime.list()}
    assert (by_task["t-exit"].running, by_task["t-exit"].exit_code) == (False, 3)
    assert (by_task["t-killed"].running, by_task["t-killed"].exit_code) == (False, 137)


async def test_a_task_can_start_again_after_it_exited(runtime: ProcessRuntime, base_dir: Path) -> None:
    exits = runtime.exits()
    await runtime.start(task("t-again", ["sh", "-c", "echo first; exit 1"]))
    await next_exit(exits)
    await runtime.start(task("t-again", ["sh", "-c", "echo second; sleep 300"]))
    [inst] = await runtime.list()
    assert (inst.running, inst.exit_code) == (True, None)
    log = base_dir / "t-again" / LOG_FILE
    await eventually_async(lambda: log.read_bytes() == b"first\nsecond\n", 5, "both runs' output")


async def test_stop_terminates_the_whole_process_group(runtime: ProcessRuntime, base_dir: Path) -> None:
    exits = runtime.exits()
    cid = await runtime.start(task("t-group", ["sh", "-c", "sleep 300 & sleep 300 & wait"]))
    pid = state_of(base_dir, "t-group")["pid"]
    children = await eventually_async(
        lambda: s if len(s := session_members(pid)) == 2 else None, 5, "two children"
    )

    started = time.monotonic()
    await runtime.stop(cid, 5.0)
    assert time.monotonic() - started < 4  # SIGTERM was enough
    ex = await next_exit(exits)
    assert ex.exit_code == 128 + signal.SIGTERM
    await eventually_async(lambda: not any(alive(p) for p in children), 5, "the children to be gone")
    [inst] = await runtime.list()
    assert not inst.running
    await runtime.stop(cid, 1.0)  # stopping a stopped task is no error
    await runtime.stop("proc-unknown", 1.0)
    await runtime.stop("not-a-process-id", 1.0)


async def test_stop_escalates_to_sigkill_after_the_grace_period(
    runtime: ProcessRuntime, base_dir: Path
) -> None:
    exits = runtime.exits()
    cid = await runtime.start(task("t-stubborn", ["sh", "-c", "trap '' TERM; touch ready; sleep 300"]))
    await eventually_async(lambda: (base_dir / "t-stubborn" / "ready").exists(), 5, "the trap")
    started = time.monotonic()
    await runtime.stop(cid, 1.0)
    assert 0.9 <= time.monotonic() - started < 5
    ex = await next_exit(exits)
    assert ex.exit_code == 128 + signal.SIGKILL
    pid = state_of(base_dir, "t-stubborn")["pid"]
    await eventually_async(lambda: not session_members(pid), 5, "the sleep to be gone too")


async def test_stop_kills_children_that_left_the_group(runtime: ProcessRuntime, base_dir: Path) -> None:
    escapee = "import os, time; os.setpgid(0, 0); open('escaped', 'w').close(); time.sleep(300)"
    cid = await runtime.start(task("t-escape", ["sh", "-c", f'"{sys.executable}" -c "{escapee}" & wait']))
    await eventually_async(lambda: (base_dir / "t-escape" / "escaped").exists(), 10, "the child's own group")
    pid = state_of(base_dir, "t-escape")["pid"]
    [child] = session_members(pid)
    assert os.getpgid(child) != pid
    await runtime.stop(cid, 2.0)
    await eventually_async(lambda: not alive(child), 5, "the child that left the group to be gone")


async def test_remove_deletes_the_task_dir(runtime: ProcessRuntime, base_dir: Path) -> None:
    cid = await runtime.start(task("t-rm", ["sleep", "300"]))
    pid = state_of(base_dir, "t-rm")["pid"]
    await runtime.remove(cid)  # a running task is killed first, like `docker rm -f`
    assert not (base_dir / "t-rm").exists()
    assert await runtime.list() == []
    await eventually_async(lambda: not alive(pid), 5, "the process to be gone")
    await runtime.remove(cid)
    await runtime.remove("proc-unknown")


async def test_bad_command_is_a_start_error(runtime: ProcessRuntime, base_dir: Path) -> None:
    with pytest.raises(RuntimeStartError, match="no-such-command"):
        await runtime.start(task("t-bad", ["no-such-command", "x"]))
    with pytest.raises(RuntimeStartError, match="not found"):
        await runtime.start(task("t-bad", ["./missing.sh"]))
    assert await runtime.list() == []


async def test_logs_tail_then_follow_until_the_process_ends(runtime: ProcessRuntime, base_dir: Path) -> None:
    script = (
        "for i in 1 2 3; do echo line$i; done; echo oops >&2; until [ -f go ]; do sleep 0.05; done; echo end"
    )
    cid = await runtime.start(task("t-logs", ["sh", "-c", script]))

    async def read(tail: int | None) -> bytes:
        return b"".join([chunk async for chunk in runtime.logs(cid, follow=False, tail=tail)])

    await eventually_async(lambda: _ends_with(read(None), b"oops\n"), 5, "the first lines")
    assert await read(2) == b"line3\noops\n"
    assert await read(None) == b"line1\nline2\nline3\noops\n"
    assert await read(10) == b"line1\nline2\nline3\noops\n"
    assert await read(0) == b""

    followed: list[bytes] = []

    async def follow() -> None:
        async for chunk in runtime.logs(cid, follow=True, tail=1):
            followed.append(chunk)

    reader = asyncio.create_task(follow())
    await eventually_async(lambda: followed == [b"oops\n"], 5, "the tail")
    assert not reader.done()
    (base_dir / "t-logs" / "go").touch()
    await asyncio.wait_for(reader, 5)  # ends by itself once the process exits
    assert b"".join(followed) == b"oops\nend\n"


async def _ends_with(data: Awaitable[bytes], suffix: bytes) -> bool:
    return (await data).endswith(suffix)


async def test_exec_runs_with_the_tasks_env_and_dir_and_is_bounded(
    runtime: ProcessRuntime, base_dir: Path
) -> None:
    cid = await runtime.start(task("t-exec", ["sleep", "300"], env={"WHO": "warren"}))
    assert await runtime.exec(cid, ["sh", "-c", f'test "$WHO" = warren && test -f {STATE_FILE}'], 5) == 0
    assert await runtime.exec(cid, ["sh", "-c", "exit 5"], 5) == 5
    assert await runtime.exec(cid, ["no-such-command"], 5) == 127
    assert await runtime.exec("proc-unknown", ["true"], 5) == -1

    started = time.monotonic()
    code = await runtime.exec(cid, ["sh", "-c", "sleep 300 & echo $! > exec-child; wait"], 0.5)
    assert code == -1
    assert time.monotonic() - started < 3
    child = int((base_dir / "t-exec" / "exec-child").read_text())
    await eventually_async(lambda: not alive(child), 5, "the timed-out exec's children to be killed")


async def test_memory_limit_is_the_address_space_limit(runtime: ProcessRuntime, base_dir: Path) -> None:
    if shutil.which("prlimit") is None:
        pytest.skip("prlimit (util-linux) is not installed: memory limits are not enforced")
    exits = runtime.exits()
    await runtime.start(task("t-mem", ["sh", "-c", "cat /proc/self/limits"], memory=256 * MIB))
    assert (await next_exit(exits)).exit_code == 0
    limits = (base_dir / "t-mem" / LOG_FILE).read_text()
    [line] = [line for line in limits.splitlines() if line.startswith("Max address space")]
    assert line.split()[3:5] == [str(256 * MIB), str(256 * MIB)]


async def test_workers_sharing_a_dir_see_only_their_own_tasks(base_dir: Path) -> None:
    a = ProcessRuntime(CLUSTER, "node-a", str(base_dir))
    b = ProcessRuntime(CLUSTER, "node-b", str(base_dir))
    other_cluster = ProcessRuntime("cluster-other", "node-a", str(base_dir))
    try:
        await a.start(task("t-a", ["sleep", "300"]))
        await b.start(task("t-b", ["sleep", "300"]))
        assert [i.task_id for i in await a.list()] == ["t-a"]
        assert [i.task_id for i in await b.list()] == ["t-b"]
        assert await other_cluster.list() == []
    finally:
        for rt in (a, b, other_cluster):
            await rt.close()


async def test_a_restarted_worker_adopts_its_process_and_sees_it_exit(base_dir: Path) -> None:
    # The first worker is a real process that starts the task and exits, as a worker would.
    worker = textwrap.dedent(
        f"""
        import asyncio
        from warren.runtime.base import TaskRun
        from warren.runtime.process import ProcessRuntime

        async def main():
            rt = ProcessRuntime({CLUSTER!r}, "node-a", {str(base_dir)!r})
            await rt.start(TaskRun("t-adopt", "svc-1", "web", 1, "", ["sleep", "300"], {{}}))
            await rt.close()

        asyncio.run(main())
        """
    )
    subprocess.run([sys.executable, "-c", worker], env=child_env(), check=True, timeout=60)
    state = state_of(base_dir, "t-adopt")
    assert is_ours(state["pid"], state["pid_start"])  # it outlived the worker that started it

    second = ProcessRuntime(CLUSTER, "node-a", str(base_dir))
    try:
        [inst] = await second.list()
        assert (inst.task_id, inst.running) == ("t-adopt", True)
        exits = second.exits()
        os.kill(state["pid"], signal.SIGKILL)
        ex = await next_exit(exits, 5)
        # Not our child: the pidfd says it ended, nobody can tell how.
        assert (ex.task_id, ex.container_id, ex.exit_code) == ("t-adopt", "proc-t-adopt", None)
        [inst] = await second.list()
        assert (inst.running, inst.exit_code) == (False, None)
    finally:
        await second.close()


async def test_a_reused_pid_is_not_taken_for_the_task(base_dir: Path) -> None:
    stranger = subprocess.Popen(["sleep", "300"], start_new_session=True)
    try:
        stat = proc_stat(stranger.pid)
        assert stat is not None
        # A state file naming the stranger's pid, but another start time: the task's process died
        # and the pid went to someone else.
        task_dir = base_dir / "t-reused"
        task_dir.mkdir(parents=True)
        labels = {LABEL_CLUSTER: CLUSTER, LABEL_NODE: "node-a", LABEL_TASK: "t-reused"}
        state = {"task_id": "t-reused", "labels": labels, "pid": stranger.pid, "pid_start": stat[2] - 1}
        (task_dir / STATE_FILE).write_text(json.dumps(state))

        rt = ProcessRuntime(CLUSTER, "node-a", str(base_dir))
        try:
            [inst] = await rt.list()
            assert (inst.task_id, inst.running) == ("t-reused", False)
            await rt.stop("proc-t-reused", 0.5)
            await rt.remove("proc-t-reused")
            assert not task_dir.exists()
            assert stranger.poll() is None  # never signalled
        finally:
            await rt.close()
    finally:
        stranger.kill()
        stranger.wait()


async def test_long_logs_are_rotated(base_dir: Path) -> None:
    settings = RuntimeSettings(log_rotate_check_s=0.05, process_log_max_bytes=4096)
    rt = ProcessRuntime(CLUSTER, "node-a", str(base_dir), settings=settings)
    try:
        line = "x" * 99
        await rt.start(task("t-chatty", ["sh", "-c", f"while true; do echo {line}; sleep 0.001; done"]))
        rotated = base_dir / "t-chatty" / (LOG_FILE + ".1")
        await eventually_async(rotated.exists, 10, "a rotated log")
        assert rotated.stat().st_size > 4096
        # The process writes on at the start of the truncated file (O_APPEND), not at its old offset
        # (which would leave a hole of zeros in front).
        current = base_dir / "t-chatty" / LOG_FILE
        await eventually_async(lambda: current.stat().st_size > 0, 5, "output after the rotation")
        assert current.read_bytes()[:1] in (b"x", b"\n")
    finally:
        await rt.close()


async def test_an_ingress_process_task_is_reached_at_its_target_port(runtime: ProcessRuntime) -> None:
    publish = (PortMapping(18080, 8080, ingress=True), PortMapping(9000, 9001))
    cid = await runtime.start(task("t-ingress", ["sleep", "30"], publish=publish))
    assert await runtime.ingress_ports(cid, publish) == {18080: 8080}  # it binds its target itself
    await runtime.stop(cid, 1)
    await runtime.remove(cid)
    with pytest.raises(NotFoundError):
        await runtime.ingress_ports(cid, publish)
