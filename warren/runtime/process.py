"""The process runtime: a task is a supervised local process (like Nomad's raw_exec).

For hosts without a container engine and for large simulated clusters. Each task gets a directory
`<base_dir>/<task_id>/` (mode 0700) holding `state.json` (labels, pid, the process's start time, the
command and env, the exit status once known) and `output.log` (stdout and stderr), and runs there
(taskdir.py).

- The process starts in its own session (`setsid`), so it survives the worker's exit and a restarted
  worker adopts it from its state file. A pid is trusted only together with the start time recorded
  from /proc/<pid>/stat at spawn, so a reused pid is never mistaken for the task's process.
- Exits are never polled: a pidfd of the process becomes readable when it exits (os.pidfd_open,
  Linux >= 5.3). The worker that spawned a process also reaps it and knows its exit status (a signal
  N is reported as 128 + N, as shells and Docker do); a process adopted after a worker restart is not
  our child, so its status is unknown (None).
- `stop` signals the whole process group (SIGTERM, then SIGKILL after the grace period), and kills
  what is left of the task's session afterwards (children that moved to a group of their own).
- Memory: the limit is RLIMIT_AS (address space), set by util-linux `prlimit`, which wraps the
  command and then execs it (same pid). Without `prlimit` the limit is not enforced (logged once).
  Address space is not resident memory: runtimes that reserve large virtual areas (Go, the JVM) need
  a generous limit. CPU limits are not enforced by this runtime.
- Published ports are not mapped: the process binds its host ports itself. An ingress replica binds
  its target port, which is therefore the port `ingress_ports` reports.
- Container options with an equivalent here: `user` (the worker must be root to run a task as another
  user; no supplementary groups; the task's directory stays the worker's alone, since it holds
  state.json, so such a task should be given a `workdir`), `workdir` (instead of the task's
  directory), `stop_signal` (instead of SIGTERM) and `ulimits` (through prlimit, then required). The
  others (devices, capabilities, network, hostname, read-only, init, sysctls, privileged) are the
  scheduler's reason not to place a process task, and refused here too.
- Mounts (docs/volumes.md): a volume is the directory `<volumes_dir>/<NAME>` (mode 0700, made on
  first use, kept across tasks and worker restarts, removed only by `remove_volume`), a bind is the
  node's path the worker checked; neither is mounted anywhere: the task gets each one's path in its
  environment as `WARREN_MOUNT_<TARGET>` (warren.spec.mounts.mount_env: /var/lib/data ->
  WARREN_MOUNT_VAR_LIB_DATA), and `WARREN_VOLUMES_DIR` if it mounts a volume. A tmpfs and
  `read_only` have no equivalent (warren.spec.mounts.unsupported_by_process): refused like the
  container options above.
- The log file is rotated (copy, then truncate in place: the process keeps writing through its
  O_APPEND descriptor) past `RuntimeSettings.process_log_max_bytes`; a few lines written during the
  copy may be lost.
"""

from __future__ import annotations

import asyncio
import builtins
import logging
import os
import shutil
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from warren.config import RuntimeSettings
from warren.errors import NotFoundError
from warren.runtime.base import (
    Exit,
    ExitQueue,
    Instance,
    PortMapping,
    RuntimeStartError,
    RuntimeUnavailableError,
    TaskRun,
    VolumeBusyError,
    task_labels,
)
from warren.runtime.procfs import PidWaiter, SessionScan, exit_code_of, is_ours, signal_group, terminate
from warren.runtime.spawn import DEFAULT_PATH, resolve, run_as, run_as_user, spawn, task_env
from warren.runtime.taskdir import (
    CHUNK,
    LOG_FILE,
    container_id_of,
    read_task_state,
    rotate_log,
    safe_id,
    tail_offset,
    task_id_of,
    task_states,
    write_task_state,
)
from warren.spec.container import SIGNALS
from warren.spec.mounts import mount_env, unsupported_by_process

log = logging.getLogger(__name__)

# Where a task that uses secrets finds them: one file per secret, named after it (mode 0400, on tmpfs).
SECRETS_ENV = "WARREN_SECRETS_DIR"
# Where a task that mounts a volume finds the volume directories (each at WARREN_MOUNT_<TARGET> too).
VOLUMES_ENV = "WARREN_VOLUMES_DIR"
# Where a task that uses configs finds them: one file per config, named after it, at the mode asked.
CONFIGS_ENV = "WARREN_CONFIGS_DIR"


# Children of closed runtimes (see ProcessRuntime.close).
_DETACHED: list[subprocess.Popen[bytes]] = []


class ProcessRuntime:
    """`ContainerRuntime` whose containers are local processes under `base_dir` (one worker's)."""

    driver = "process"

    def __init__(
        self,
        cluster_id: str,
        node: str,
        base_dir: str,
        *,
        volumes_dir: str | None = None,
        settings: RuntimeSettings | None = None,
    ) -> None:
        self.cluster_id = cluster_id
        self.node = node
        self.base_dir = Path(base_dir)
        # The tasks' volumes, one directory each; beside the task directories by default.
        self.volumes_dir = Path(volumes_dir) if volumes_dir is not None else self.base_dir.parent / "volumes"
        self._settings = settings if settings is not None else RuntimeSettings()
        self._prlimit = shutil.which("prlimit")
        self._warned_no_prlimit = False
        # Popen objects of our own children until they are reaped through their pidfd (dropping
        # one lets the subprocess module reap the child behind our back, losing its exit status).
        self._children: dict[str, subprocess.Popen[bytes]] = {}
        self._watchers: dict[str, asyncio.Task[None]] = {}
        self._exits = ExitQueue()
        # What is left of stopped tasks' sessions: one scan of /proc for the stops that end together.
        self._sessions = SessionScan()
        self._adopted = False
        self._closed = False

    # -- start --------------------------------------------------------------------------------------

    async def start(self, run: TaskRun) -> str:
        self._check_open()
        self._adopt()
        if not safe_id(run.task_id):
            raise RuntimeStartError(f"task ID {run.task_id!r} cannot name a directory")
        if not run.command:
            raise RuntimeStartError("a process task needs a command (there is no image to run)")
        task_dir = self.base_dir / run.task_id
        container_id = container_id_of(run.task_id)
        old = read_task_state(self.base_dir, run.task_id)
        if old is not None and is_ours(old.get("pid"), old.get("pid_start")):
            raise RuntimeStartError(f"task {run.task_id} is already running (pid {old['pid']})")
        options = run.options
        unsupported = [f"container.{name}" for name in options.unsupported_by_process()]
        if run.devices and not unsupported:
            unsupported.append("container.devices")
        unsupported += unsupported_by_process(run.mounts)
        if unsupported:  # the scheduler places no such task here; an older manager might
            raise RuntimeStartError(f"{', '.join(unsupported)}: not supported by the process runtime")
        try:
            ids = run_as(options.user)
        except ValueError as exc:
            raise RuntimeStartError(f"cannot start task {run.task_id}: {exc}") from exc
        env = task_env(run.env)
        if run.secrets_dir is not None:
            env[SECRETS_ENV] = run.secrets_dir
        env.update(self._mounts(run))
        if run.configs_dir is not None:
            env[CONFIGS_ENV] = run.configs_dir
        cwd = Path(options.workdir) if options.workdir is not None else task_dir
        executable = resolve(run.command[0], env.get("PATH", DEFAULT_PATH), cwd)
        if executable is None:
            raise RuntimeStartError(f"cannot start task {run.task_id}: command {run.command[0]!r} not found")
        argv = [executable, *run.command[1:]]
        argv = self._limited(argv, run)
        state = {
            "task_id": run.task_id,
            "container_id": container_id,
            "labels": task_labels(self.cluster_id, self.node, run),
            "command": list(run.command),
            "argv": argv,
            "env": env,
            "image": run.image,
            "memory": run.memory,
            # What stopping it and running its health checks need again (None: the defaults).
            "stop_signal": options.stop_signal,
            "cwd": str(cwd),
            "ids": None if ids is None else list(ids),
            "exit_code": None,
            "finished_at": None,
        }
        try:
            # In a thread, the directories and files with the process: creating files waits for the
            # file system's journal, which a busy disk makes take milliseconds each, and a worker
            # starting a thousand tasks must not block its event loop (its session) meanwhile.
            proc, start = await asyncio.to_thread(self._launch, task_dir, argv, env, cwd, ids, state)
        except OSError as exc:
            raise RuntimeStartError(f"cannot start task {run.task_id}: {exc.strerror or exc}") from exc
        self._children[run.task_id] = proc
        self._watch(run.task_id, proc.pid, start)
        log.info("started process %d for task %s", proc.pid, run.task_id)
        return container_id

    def _launch(
        self, task_dir: Path, argv: list[str], env: Mapping[str, str], cwd: Path, ids: tuple[int, int] | None,
        state: dict[str, Any],
    ) -> tuple[subprocess.Popen[bytes], int | None]:
        """The task's directory, its process, and its state file saying which process it is
        (`state` completed with the pid, its start time and when). Blocking: run in a thread."""
        self.base_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        task_dir.mkdir(mode=0o700, exist_ok=True)
        proc, start = spawn(argv, env, task_dir / LOG_FILE, cwd=str(cwd), ids=ids)
        state.update(pid=proc.pid, pid_start=start, started_at=time.time())
        try:
            write_task_state(self.base_dir, task_dir.name, state)
        except OSError:  # a process no state file names could never be stopped nor adopted
            signal_group(proc.pid, signal.SIGKILL)
            proc.wait()
            raise
        return proc, start

    def _limited(self, argv: list[str], run: TaskRun) -> list[str]:
        """`argv` run under util-linux prlimit with the task's memory limit (RLIMIT_AS) and ulimits.
        Without prlimit, a memory limit is not enforced (logged once) and ulimits refuse the start."""
        limits = [f"--{name}={limit.soft}:{limit.hard}" for name, limit in run.options.ulimits.items()]
        if self._prlimit is None:
            if limits:
                raise RuntimeStartError("container.ulimits need util-linux prlimit on this worker")
            if run.memory is not None and not self._warned_no_prlimit:
                self._warned_no_prlimit = True
                log.warning("prlimit (util-linux) not found: memory limits of process tasks are not enforced")
            return argv
        if run.memory is not None:
            limits.insert(0, f"--as={run.memory}")
        return [self._prlimit, *limits, "--", *argv] if limits else argv

    # -- exits --------------------------------------------------------------------------------------

    def _watch(self, task_id: str, pid: int, start: int | None) -> None:
        old = self._watchers.pop(task_id, None)
        if old is not None:
            old.cancel()
        self._watchers[task_id] = asyncio.get_running_loop().create_task(self._watch_one(task_id, pid, start))

    async def _watch_one(self, task_id: str, pid: int, start: int | None) -> None:
        """Wait for the process to exit (rotating its log meanwhile) and report the exit."""
        waiter = PidWaiter.open(pid, start)
        exit_code = None
        try:
            if waiter is not None:
                while not await waiter.wait(self._settings.log_rotate_check_s):
                    rotate_log(self.base_dir, task_id, self._settings.process_log_max_bytes)
                exit_code = waiter.reap()
        finally:
            if waiter is not None:
                waiter.close()
            if self._watchers.get(task_id) is asyncio.current_task():
                del self._watchers[task_id]
        proc = self._children.pop(task_id, None)
        if proc is not None and proc.pid == pid and exit_code is not None:
            proc.returncode = exit_code  # reaped above: the Popen must not wait for it again
        message = "" if exit_code is not None else "exit status unknown: not a child of this worker"
        state = read_task_state(self.base_dir, task_id)
        if state is not None and state.get("pid") == pid and state.get("pid_start") == start:
            state["exit_code"] = exit_code
            state["finished_at"] = time.time()
            try:
                write_task_state(self.base_dir, task_id, state)
            except OSError as exc:  # the dir was removed meanwhile
                log.debug("cannot record the exit of task %s: %s", task_id, exc)
        log.info("process %d of task %s exited (%s)", pid, task_id, exit_code)
        if not self._closed:
            self._exits.put(Exit(task_id, container_id_of(task_id), exit_code, message))

    def _adopt(self) -> None:
        """On first use: watch this worker's live processes left by an earlier worker (restart)."""
        if self._adopted:
            return
        self._adopted = True
        for state in task_states(self.base_dir, self.cluster_id, self.node):
            task_id = state["task_id"]
            if task_id not in self._watchers and is_ours(state.get("pid"), state.get("pid_start")):
                log.info("adopting process %d of task %s", state["pid"], task_id)
                self._watch(task_id, state["pid"], state["pid_start"])

    def exits(self) -> AsyncIterator[Exit]:
        """Exits as the processes end, from the runtime's first use (start, list or this call). Meant
        for one consumer at a time (the worker agent); call it in the loop."""
        self._check_open()
        self._adopt()
        return self._exits.stream()

    def _mounts(self, run: TaskRun) -> dict[str, str]:
        """The task's mount variables, its volume directories made (0700) if missing."""
        env: dict[str, str] = {}
        for mount in run.mounts:
            path = mount.source
            if mount.type == "volume" and mount.source is not None:
                if not safe_id(mount.source):
                    raise RuntimeStartError(f"volume name {mount.source!r} cannot name a directory")
                volume = self.volumes_dir / mount.source
                try:
                    self.volumes_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
                    volume.mkdir(mode=0o700, exist_ok=True)
                except OSError as exc:
                    raise RuntimeStartError(
                        f"cannot make volume {mount.source} ({volume}): {exc.strerror or exc}"
                    ) from exc
                path = str(volume)
                env[VOLUMES_ENV] = str(self.volumes_dir)
            if path is not None:
                env[mount_env(mount.target)] = path
        return env

    async def volumes(self) -> builtins.list[str]:
        self._check_open()
        try:
            return sorted(e.name for e in os.scandir(self.volumes_dir) if e.is_dir(follow_symlinks=False)
                          and safe_id(e.name))
        except FileNotFoundError:
            return []

    async def remove_volume(self, name: str) -> None:
        self._check_open()
        if not safe_id(name):
            return
        volume = self.volumes_dir / name
        if not volume.is_dir() or volume.is_symlink():
            return
        try:
            await asyncio.to_thread(shutil.rmtree, volume)
        except OSError as exc:
            raise VolumeBusyError(f"cannot remove {volume}: {exc.strerror or exc}") from exc
        log.info("removed volume %s (%s)", name, volume)

    # -- stop, remove, list -------------------------------------------------------------------------

    async def stop(self, container_id: str, timeout_s: float) -> None:
        self._check_open()
        task_id = task_id_of(container_id)
        state = read_task_state(self.base_dir, task_id) if task_id is not None else None
        if state is None:
            return
        await self._kill(state, timeout_s)

    async def _kill(self, state: Mapping[str, Any], timeout_s: float) -> None:
        pid = state.get("pid")
        if isinstance(pid, int) and pid > 0:
            stop_signal = state.get("stop_signal")
            signum = signal.Signals[str(stop_signal)] if stop_signal in SIGNALS else signal.SIGTERM
            await terminate(pid, state.get("pid_start"), timeout_s, name=f"task {state.get('task_id')}",
                            signum=signum, scan=self._sessions)

    async def remove(self, container_id: str) -> None:
        self._check_open()
        task_id = task_id_of(container_id)
        if task_id is None:
            return
        state = read_task_state(self.base_dir, task_id)
        if state is not None:
            await self._kill(state, 0.0)  # like `docker rm -f`
        watcher = self._watchers.pop(task_id, None)
        if watcher is not None:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)  # done with the dir before it goes
        self._children.pop(task_id, None)
        await asyncio.to_thread(shutil.rmtree, self.base_dir / task_id, True)

    async def list(self) -> list[Instance]:
        self._check_open()
        self._adopt()
        instances = []
        for state in task_states(self.base_dir, self.cluster_id, self.node):
            running = is_ours(state.get("pid"), state.get("pid_start"))
            instances.append(
                Instance(
                    task_id=state["task_id"],
                    container_id=container_id_of(state["task_id"]),
                    running=running,
                    exit_code=None if running else state.get("exit_code"),
                    started_at=state.get("started_at"),
                    labels=dict(state.get("labels") or {}),
                )
            )
        return instances

    # -- logs, exec, address ------------------------------------------------------------------------

    async def logs(self, container_id: str, *, follow: bool, tail: int | None) -> AsyncIterator[bytes]:
        self._check_open()
        state = self._known(container_id)
        path = self.base_dir / state["task_id"] / LOG_FILE
        waiter = PidWaiter.open(state["pid"], state.get("pid_start")) if follow else None
        try:
            with open(path, "rb") if path.exists() else open(os.devnull, "rb") as f:
                f.seek(tail_offset(f, tail))
                while True:
                    while chunk := f.read(CHUNK):
                        yield chunk
                    if waiter is None or waiter.exited:
                        return
                    exited = await waiter.wait(self._settings.log_follow_interval_s)
                    if not exited and os.fstat(f.fileno()).st_size < f.tell():
                        f.seek(0)  # rotated: the file was truncated in place
        finally:
            if waiter is not None:
                waiter.close()

    async def exec(self, container_id: str, cmd: builtins.list[str], timeout_s: float) -> int:
        """Exit status of `cmd` run with the task's env in its directory; -1 if it did not finish
        within `timeout_s` (its whole process group is killed) or the task is unknown; 127 if the
        command does not exist."""
        self._check_open()
        try:
            state = self._known(container_id)
        except NotFoundError:
            return -1
        if not cmd:
            return -1
        env = dict(state.get("env") or task_env({}))
        cwd = Path(state.get("cwd") or self.base_dir / state["task_id"])
        ids = state.get("ids")  # as the task's own user, if it has one
        executable = resolve(cmd[0], env.get("PATH", DEFAULT_PATH), cwd)
        if executable is None:
            return 127
        if ids:  # uvloop's subprocesses cannot change user: a blocking Popen in a thread can
            try:
                return await asyncio.to_thread(run_as_user, [executable, *cmd[1:]], env, cwd, ids, timeout_s)
            except OSError as exc:
                log.debug("exec %r for %s failed: %s", cmd, container_id, exc)
                return 126
        try:
            proc = await asyncio.create_subprocess_exec(
                executable,
                *cmd[1:],
                env=env,
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
        except OSError as exc:
            log.debug("exec %r for %s failed: %s", cmd, container_id, exc)
            return 126
        try:
            async with asyncio.timeout(timeout_s):
                return exit_code_of(await proc.wait())
        except TimeoutError:
            return -1
        finally:
            if proc.returncode is None:
                signal_group(proc.pid, signal.SIGKILL)
                await proc.wait()

    async def address(self, container_id: str) -> str:
        self._check_open()
        self._known(container_id)
        return "127.0.0.1"  # a process binds the host's own addresses

    async def ingress_ports(self, container_id: str, publish: Sequence[PortMapping]) -> dict[int, int]:
        self._check_open()
        self._known(container_id)
        # The task shares the node's network: it listens on its target port itself.
        return {p.host: p.container for p in publish if p.ingress}

    # -- files --------------------------------------------------------------------------------------

    def _known(self, container_id: str) -> dict[str, Any]:
        task_id = task_id_of(container_id)
        state = read_task_state(self.base_dir, task_id) if task_id is not None else None
        if state is None:
            raise NotFoundError(f"no process task {container_id} on this worker")
        return state

    # -- close --------------------------------------------------------------------------------------

    async def close(self) -> None:
        """Stop watching; the processes keep running (a restarted worker adopts them)."""
        if self._closed:
            return
        self._closed = True
        for task in list(self._watchers.values()):
            task.cancel()
        self._watchers.clear()
        # Running children must outlive this runtime: kept from the garbage collector, whose Popen
        # finalizer would warn about them and let the subprocess module reap them behind our back.
        _DETACHED.extend(proc for proc in self._children.values() if proc.returncode is None)
        self._children.clear()
        self._exits.close()

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeUnavailableError("the process runtime is closed")
