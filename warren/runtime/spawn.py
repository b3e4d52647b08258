"""How a process task's process is started: its environment (a few of the worker's variables, then
the spec's), its executable, the user it runs as, and a session of its own with its output appended to
its log file."""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import signal
import subprocess
from collections.abc import Mapping
from pathlib import Path

from warren.runtime.procfs import exit_code_of, proc_stat, signal_group

# Variables of the worker's own environment a task inherits (its spec's env is added on top). The
# rest of the worker's environment (which may hold its credentials) is not passed on.
INHERITED_ENV = ("PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR")
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def task_env(extra: Mapping[str, str]) -> dict[str, str]:
    env = {name: os.environ[name] for name in INHERITED_ENV if name in os.environ}
    env.setdefault("PATH", DEFAULT_PATH)
    env.update(extra)
    return env


def resolve(command: str, path: str, cwd: Path) -> str | None:
    """The executable `command` names: a path (relative to the task's directory), or looked up in
    the task's PATH; None if there is no such executable."""
    if "/" in command:
        candidate = cwd / command
        return str(candidate) if os.access(candidate, os.X_OK) and candidate.is_file() else None
    return shutil.which(command, path=path)


def run_as(user: str | None) -> tuple[int, int] | None:
    """The (uid, gid) a task's `user[:group]` (names or numbers) names, None if that is the worker's
    own (nothing to change). A user without a group runs with its passwd entry's group (with a bare
    uid unknown to the host: the gid of the same number). ValueError if a name is unknown, or if
    another user is asked of a worker that is not root (only root may change its user)."""
    if user is None:
        return None
    name, _, group = user.partition(":")
    try:
        entry = pwd.getpwuid(int(name)) if name.isdigit() else pwd.getpwnam(name)
        uid, default_gid = entry.pw_uid, entry.pw_gid
    except KeyError:
        if not name.isdigit():
            raise ValueError(f"user {name!r} is not known on this worker") from None
        uid = default_gid = int(name)
    if group:
        try:
            gid = int(group) if group.isdigit() else grp.getgrnam(group).gr_gid
        except KeyError:
            raise ValueError(f"group {group!r} is not known on this worker") from None
    else:
        gid = default_gid
    if (uid, gid) == (os.geteuid(), os.getegid()):
        return None
    if os.geteuid() != 0:
        raise ValueError(f"running as {user} needs a worker running as root")
    return uid, gid


def spawn(
    argv: list[str], env: Mapping[str, str], log_file: Path, *, cwd: str | None = None,
    ids: tuple[int, int] | None = None,
) -> tuple[subprocess.Popen[bytes], int | None]:
    """Start the task's process in a new session, in `cwd` (by default the log file's directory), as
    `ids` (uid, gid; with no supplementary group) if given, with its output appended to the log file;
    the Popen and the process's start time (None if it is gone already). Blocking."""
    with open(log_file, "ab") as out:
        os.chmod(log_file, 0o600)
        proc = subprocess.Popen(
            argv,
            env=dict(env),
            cwd=cwd if cwd is not None else log_file.parent,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
            user=None if ids is None else ids[0],
            group=None if ids is None else ids[1],
            extra_groups=None if ids is None else [],
        )
    stat = proc_stat(proc.pid)
    return proc, stat[2] if stat is not None else None


def run_as_user(
    argv: list[str], env: Mapping[str, str], cwd: Path, ids: tuple[int, int], timeout_s: float
) -> int:
    """Exit status of `argv` run as `ids` (uid, gid) in a session of its own; -1 if it did not finish
    within `timeout_s` (its whole process group is killed). A task's health check. Blocking."""
    proc = subprocess.Popen(
        argv, env=dict(env), cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, start_new_session=True, user=ids[0], group=ids[1], extra_groups=[],
    )
    try:
        return exit_code_of(proc.wait(timeout_s))
    except subprocess.TimeoutExpired:
        signal_group(proc.pid, signal.SIGKILL)
        proc.wait()
        return -1
