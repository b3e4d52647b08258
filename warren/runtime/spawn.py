"""How a process task's process is started: its environment (a few of the worker's variables, then
the spec's), its executable, and a session of its own with its output appended to its log file."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path

from warren.runtime.procfs import proc_stat

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


def spawn(
    argv: list[str], env: Mapping[str, str], log_file: Path
) -> tuple[subprocess.Popen[bytes], int | None]:
    """Start the task's process in a new session, in the log file's directory, with its output
    appended to the log file; the Popen and the process's start time (None if it is gone already).
    Blocking."""
    with open(log_file, "ab") as out:
        os.chmod(log_file, 0o600)
        proc = subprocess.Popen(
            argv,
            env=dict(env),
            cwd=log_file.parent,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
        )
    stat = proc_stat(proc.pid)
    return proc, stat[2] if stat is not None else None
