"""Processes as Linux shows them: /proc/<pid>/stat, sessions, process groups and pidfds.

What the process runtime needs to tell its own processes from strangers (a pid is only trusted
together with the start time the kernel recorded for it), to wait for any process's exit without
polling (a pidfd becomes readable when its process exits; Linux >= 5.3), and to end a session.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal

log = logging.getLogger(__name__)

# After SIGKILL a process is gone within this long unless the kernel is stuck (D state); seconds.
_KILL_WAIT_S = 5.0


def proc_stat(pid: int) -> tuple[str, int, int] | None:
    """(state letter, session id, start time in clock ticks since boot) of a live pid, else None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            text = f.read().decode(errors="replace")
    except OSError:
        return None
    return parse_stat(text)


def parse_stat(text: str) -> tuple[str, int, int] | None:
    """(state, session, start time) from the text of /proc/<pid>/stat; None if it is malformed."""
    # The command name (field 2) is in parentheses and may itself contain spaces and parentheses:
    # the fields proper begin after the last ')'.
    close = text.rfind(")")
    fields = text[close + 1 :].split() if close != -1 else []
    try:
        return fields[0], int(fields[3]), int(fields[19])
    except (IndexError, ValueError):
        return None


def is_ours(pid: int | None, start: int | None) -> bool:
    """Whether `pid` is alive (not a zombie) and is the process that started at `start`."""
    if pid is None or start is None or pid <= 0:
        return False
    stat = proc_stat(pid)
    return stat is not None and stat[0] not in ("Z", "X", "x") and stat[2] == start


def session_members(sid: int) -> list[int]:
    """Live processes of session `sid` other than its leader. The kernel never reuses a pid that
    still names a session, so while any of them live, they are the session's own."""
    return sessions().get(sid, [])


def sessions() -> dict[int, list[int]]:
    """Every session with a live process other than its leader: session id -> those processes. One
    read of /proc/<pid>/stat per process on the machine."""
    members: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            pid = int(entry.name)
            stat = proc_stat(pid)
            if stat is not None and stat[1] != pid and stat[0] not in ("Z", "X", "x"):
                members.setdefault(stat[1], []).append(pid)
    return members


class SessionScan:
    """`session_members` for many stops at once: the stops that ask in the same turn of the event loop
    share one scan of /proc, made in the next turn (after each of them asked, so after each of their
    leaders exited). Stopping a thousand tasks made a thousand scans of every process on the machine,
    a cost that grew with the square of the tasks (docs/decisions.md)."""

    def __init__(self) -> None:
        self._next: asyncio.Future[dict[int, list[int]]] | None = None

    async def members(self, sid: int) -> list[int]:
        if self._next is None:
            loop = asyncio.get_running_loop()
            self._next = loop.create_future()
            loop.call_soon(self._scan)
        found = await asyncio.shield(self._next)
        return found.get(sid, [])

    def _scan(self) -> None:
        future, self._next = self._next, None
        if future is None or future.done():
            return
        try:
            future.set_result(sessions())
        except OSError as exc:  # /proc unreadable: every waiting stop fails as a lone scan would
            future.set_exception(exc)


def exit_code_of(returncode: int) -> int:
    """Popen's returncode (-N: killed by signal N) as a shell would say it (128 + N)."""
    return 128 - returncode if returncode < 0 else returncode


class PidWaiter:
    """Readiness of a process's pidfd (readable once it exited) as an awaitable, for any process,
    child or not. `None` from `open` if the process is already gone or is not the one we mean."""

    def __init__(self, fd: int, loop: asyncio.AbstractEventLoop) -> None:
        self._fd = fd
        self._loop = loop
        self._exited = asyncio.Event()
        loop.add_reader(fd, self._exited.set)

    @classmethod
    def open(cls, pid: int, start: int | None) -> PidWaiter | None:
        try:
            fd = os.pidfd_open(pid)
        except OSError:  # ProcessLookupError: gone (reaped) already
            return None
        # Checked after opening: the pidfd now pins this very process, whatever happens to the pid.
        stat = proc_stat(pid)
        if stat is None or stat[2] != start:
            os.close(fd)
            return None
        return cls(fd, asyncio.get_running_loop())

    @property
    def exited(self) -> bool:
        return self._exited.is_set()

    async def wait(self, timeout_s: float | None) -> bool:
        """True once the process has exited; False if `timeout_s` passed first."""
        try:
            async with asyncio.timeout(timeout_s):
                await self._exited.wait()
        except TimeoutError:
            return False
        return True

    def reap(self) -> int | None:
        """Once exited: the exit status (128 + N for signal N) if the process is a child of this
        process, which is reaped by this call; None for anyone else's process."""
        try:
            info = os.waitid(os.P_PIDFD, self._fd, os.WEXITED | os.WNOHANG)
        except ChildProcessError:
            return None
        if info is None:
            return None
        return info.si_status if info.si_code == os.CLD_EXITED else 128 + info.si_status

    def close(self) -> None:
        if self._fd >= 0:
            self._loop.remove_reader(self._fd)
            os.close(self._fd)
            self._fd = -1


def signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


async def terminate(
    pid: int, start: int | None, timeout_s: float, *, name: str, signum: int = signal.SIGTERM,
    scan: SessionScan | None = None,
) -> None:
    """`signum` to the group of session leader `pid`, SIGKILL after `timeout_s`, then SIGKILL to what
    is left of its session (found by `scan`, shared with other stops, or by a scan of its own).
    Nothing is signalled unless `pid` is still (or was) the process that started at `start`. `name`
    says whose process it is in the log."""
    stat = proc_stat(pid)
    if stat is not None and stat[2] != start:
        return  # the pid belongs to another process now: the session is gone with it
    waiter = PidWaiter.open(pid, start) if stat is not None else None
    try:
        if waiter is not None and not waiter.exited:
            signal_group(pid, signum)
            if not await waiter.wait(timeout_s):
                log.info("%s did not stop within %gs: SIGKILL", name, timeout_s)
                signal_group(pid, signal.SIGKILL)
                await waiter.wait(_KILL_WAIT_S)
    finally:
        if waiter is not None:
            waiter.close()
    # Children that left the group (or outlived their leader) still carry the session's ID.
    for member in session_members(pid) if scan is None else await scan.members(pid):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(member, signal.SIGKILL)
