"""The drill's daemons as processes: spawned in their own process group, signalled, reaped; and the
drill's own handling of Ctrl-C and SIGTERM, so that whatever it started is stopped.

A `Daemon` is one `python -m warren ...` command (a manager or the worker) with its output appended
to a log file and `WARREN_CONFIG_DIR` pointing into the drill's own directory (so `cluster init` writes
the drill cluster's admin certificate there, not into the user's ~/.config); it survives kill/restart
cycles and remembers every pid it ever had. `Interrupts` turns SIGINT and SIGTERM into
KeyboardInterrupt, except inside `deferred()` (a spawn, the clean-up), where the signal is held until
the block ends: a child must never be started without being recorded.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from warren.config import MANAGER_ENV

# Read by warren.pki.userconfig: where `cluster init` writes the CLI's admin certificate.
CONFIG_DIR_ENV = "WARREN_CONFIG_DIR"

# How a daemon is run: the interpreter running the drill, so the same installed `warren`.
WARREN = (sys.executable, "-m", "warren")


def free_port(host: str) -> int:
    """A TCP port free on `host` right now (bound to port 0, read back, released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def child_env(config_dir: Path) -> dict[str, str]:
    """The drill's environment for its daemons: unbuffered output, no WARREN_MANAGER (each daemon is
    told its managers), and `config_dir` as WARREN_CONFIG_DIR (the drill's admin certificate)."""
    env = dict(os.environ)
    env.pop(MANAGER_ENV, None)
    env["PYTHONUNBUFFERED"] = "1"
    env[CONFIG_DIR_ENV] = str(config_dir)
    return env


class Daemon:
    """One `warren` daemon command run in the background in its own process group (session)."""

    def __init__(self, label: str, argv: Sequence[str], log_path: Path, cwd: Path, config_dir: Path) -> None:
        self.label = label
        self.argv = list(argv)
        self.log_path = log_path
        self.cwd = cwd
        self.config_dir = config_dir
        self.proc: subprocess.Popen[bytes] | None = None
        self.pids: list[int] = []  # every incarnation's pid, in order
        self.stopped = False  # SIGSTOP-ed and not yet continued

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, interrupts: Interrupts) -> None:
        """Spawn the command (returns at once); a SIGTERM meanwhile waits until the pid is recorded."""
        if self.alive:
            raise RuntimeError(f"{self.label} is already running")
        with interrupts.deferred(), open(self.log_path, "ab") as log:
            log.write(f"==== {time.strftime('%H:%M:%S')} {self.label}: {' '.join(self.argv)}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.cwd,
                env=child_env(self.config_dir),
                start_new_session=True,  # its own group: killpg reaches it alone, Ctrl-C does not
            )
            self.pids.append(self.proc.pid)
            self.stopped = False

    def signal(self, signum: int) -> None:
        """Send `signum` to the daemon's process group (nothing if it has been reaped)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signum)
        if signum == signal.SIGSTOP:
            self.stopped = True
        elif signum == signal.SIGCONT:
            self.stopped = False

    def wait_exit(self, timeout_s: float) -> int | None:
        """The exit status, or None if it is still running after `timeout_s`."""
        if self.proc is None:
            return None
        try:
            return self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            return None

    def kill(self, timeout_s: float) -> None:
        """SIGKILL the process group (a frozen one too) and reap the process."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        self.wait_exit(timeout_s)
        self.stopped = False

    def exit_note(self) -> str:
        """Why it is not running: its exit status and the last line of its log."""
        code = self.proc.poll() if self.proc is not None else None
        return f"{self.label} exited with status {code}: {last_line(self.log_path)}"


def last_line(path: Path) -> str:
    """The log's last non-empty line (at most 300 characters), or "(no output)"."""
    try:
        with open(path, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - 8192))
            lines = [line.strip() for line in f.read().decode(errors="replace").splitlines() if line.strip()]
    except OSError:
        lines = []
    return lines[-1][-300:] if lines else "(no output)"


class Interrupts:
    """While active, SIGINT and SIGTERM raise KeyboardInterrupt in the main thread, except inside
    `deferred()`, which holds the signal until the outermost deferred block ends."""

    def __init__(self) -> None:
        self._depth = 0
        self._pending: int | None = None
        self._previous: dict[int, Any] = {}

    @contextlib.contextmanager
    def active(self) -> Iterator[Interrupts]:
        if threading.current_thread() is not threading.main_thread():
            yield self  # signal handlers can only be set in the main thread; the caller owns them
            return
        for signum in (signal.SIGINT, signal.SIGTERM):
            self._previous[signum] = signal.signal(signum, self._handle)
        try:
            yield self
        finally:
            for number, handler in self._previous.items():
                signal.signal(number, handler)
            self._previous.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self._depth:
            self._pending = signum
            return
        raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")

    @contextlib.contextmanager
    def deferred(self) -> Iterator[None]:
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
            pending = self._pending
            if self._depth == 0 and pending is not None:
                self._pending = None
                raise KeyboardInterrupt(f"signal {signal.Signals(pending).name}")

    @property
    def pending(self) -> bool:
        return self._pending is not None
