"""One daemon as a child process: spawned in a session of its own, signalled, reaped, its output kept.

A `Daemon` is one command (a manager, a worker, a benchmark's peer) that survives kill / freeze /
restart cycles: every incarnation's output is appended to its log file(s), behind a header line naming
the command, and every pid it ever had is remembered. It runs in its own session, so a signal sent to
its process group reaches it and its children alone, and a Ctrl-C aimed at the harness never reaches
it. Tests, benches and `warren drill` all start their daemons through it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from pathlib import Path

from warren.config import MANAGER_ENV

# Read by warren.pki.userconfig at every call: where `cluster init` writes the admin certificate.
CONFIG_DIR_ENV = "WARREN_CONFIG_DIR"
# How a daemon is run: the interpreter running the harness, so the same `warren`.
WARREN = (sys.executable, "-m", "warren")
REAP_TIMEOUT_S = 10.0  # a SIGKILLed process to be reaped; seconds
SIGNAL_EFFECT_TIMEOUT_S = 5.0  # a SIGSTOP to show in /proc (the process state "T"); seconds
HEADER = "==== "  # starts the line written to the log before each incarnation
NODE_ID = "Node ID: "  # what a manager or a worker prints before its node name, once it has one

Guard = Callable[[], AbstractContextManager[object]]


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on `host` right now (bound to port 0, read back, released)."""
    return free_ports(1, host)[0]


def free_ports(n: int, host: str = "127.0.0.1") -> list[int]:
    """`n` distinct TCP ports free on `host` right now. All are held until the last is picked: ports
    picked one at a time and released in between can repeat (seen: a manager's API and metrics
    ports were the same, and it could not start)."""
    with contextlib.ExitStack() as held:
        ports = []
        for _ in range(n):
            s = held.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            s.bind((host, 0))
            ports.append(int(s.getsockname()[1]))
        return ports


def daemon_env(config_dir: Path | None = None, *, pythonpath: Path | None = None) -> dict[str, str]:
    """A daemon's environment: ours, with unbuffered output and no WARREN_MANAGER (each daemon is told
    its managers); `config_dir` as WARREN_CONFIG_DIR (where `cluster init` writes the admin certificate,
    instead of the user's ~/.config); `pythonpath` first on PYTHONPATH (a checkout's code)."""
    env = dict(os.environ)
    env.pop(MANAGER_ENV, None)
    env["PYTHONUNBUFFERED"] = "1"
    if config_dir is not None:
        env[CONFIG_DIR_ENV] = str(config_dir)
    if pythonpath is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(pythonpath), env.get("PYTHONPATH")]))
    return env


def proc_state(pid: int) -> str | None:
    """The state letter of /proc/PID/stat ("R", "S", "T", "Z", ...); None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[0]  # the name in parentheses may itself hold spaces


def read_from(path: Path, offset: int) -> str:
    """The file from byte `offset` on ("" if it does not exist)."""
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            return f.read().decode("utf-8", errors="replace")
    except OSError:
        return ""


def last_line(path: Path) -> str:
    """The log's last non-empty line (at most 300 characters), or "(no output)"."""
    try:
        with open(path, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - 8192))
            lines = [line.strip() for line in f.read().decode(errors="replace").splitlines() if line.strip()]
    except OSError:
        lines = []
    return lines[-1][-300:] if lines else "(no output)"


def _redacted(argv: Sequence[str]) -> list[str]:
    """`argv` with the value of every `--token` hidden (a join token is a secret: never in a log)."""
    out = list(argv)
    for i, arg in enumerate(out):
        if arg == "--token" and i + 1 < len(out):
            out[i + 1] = "***"
        elif arg.startswith("--token="):
            out[i] = "--token=***"
    return out


class Daemon:
    """One daemon command run in the background in its own session.

    Stderr goes to `log_path`; stdout too, unless `out_path` names a file of its own. `prefix` comes
    before the command (e.g. `ip netns exec NAME`, which execs: the process group is still the
    daemon's). `guard()` is entered around each spawn (the drill holds SIGTERM there, so that no child
    is ever started without its pid being recorded).
    """

    def __init__(
        self,
        label: str,
        argv: Sequence[str],
        log_path: Path,
        *,
        cwd: Path,
        env: Mapping[str, str],
        out_path: Path | None = None,
        prefix: Sequence[str] = (),
        guard: Guard = contextlib.nullcontext,
    ) -> None:
        self.label = label
        self.argv = list(argv)
        self.log_path = log_path
        self.out_path = out_path or log_path
        self.cwd = cwd
        self.env = dict(env)
        self.prefix = list(prefix)
        self.guard = guard
        self.proc: subprocess.Popen[bytes] | None = None
        self.pids: list[int] = []  # every incarnation's pid, in order
        self.stopped = False  # SIGSTOP-ed and not yet continued
        self._out_offset = 0  # where the current incarnation's output starts
        self._log_offset = 0

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.label}, pid={self.pid})"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    # -- lifecycle ------------------------------------------------------------------------------------

    def start(self) -> None:
        """Spawn the command (returns at once)."""
        if self.alive:
            raise RuntimeError(f"{self.label} is already running")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        argv = [*self.prefix, *self.argv]
        with self.guard(), open(self.log_path, "ab") as log, open(self.out_path, "ab") as out:
            command = " ".join(_redacted(argv))
            log.write(f"{HEADER}{time.strftime('%H:%M:%S')} start {self.label}: {command}\n".encode())
            log.flush()
            self._log_offset = log.tell()
            self._out_offset = out.seek(0, os.SEEK_END)  # past the header when both are one file
            self.proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=log,
                cwd=self.cwd,
                env=self.env,
                start_new_session=True,  # its own group: killpg reaches it alone, Ctrl-C does not
            )
            self.pids.append(self.proc.pid)
            self.stopped = False

    def signal(self, signum: int) -> None:
        """Send `signum` to the daemon's process group (nothing once it has been reaped)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signum)
        if signum == signal.SIGSTOP:
            self.stopped = True
        elif signum == signal.SIGCONT:
            self.stopped = False

    def kill(self, timeout_s: float = REAP_TIMEOUT_S) -> None:
        """SIGKILL of the process group (a frozen one too; no flush, no hand-over: a power cut, as the
        rest of the cluster sees it), and reap the process."""
        self.signal(signal.SIGKILL)
        self.wait_exit(timeout_s)
        self.stopped = False

    def freeze(self) -> None:
        """SIGSTOP of the process group; returns once the process shows as stopped in /proc (its
        sockets stay open)."""
        if self.proc is None:
            raise RuntimeError(f"{self.label} was never started")
        self.signal(signal.SIGSTOP)
        deadline = time.monotonic() + SIGNAL_EFFECT_TIMEOUT_S
        while proc_state(self.proc.pid) not in ("T", None):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.label} did not stop within {SIGNAL_EFFECT_TIMEOUT_S:g} s "
                                   "of SIGSTOP")
            time.sleep(0.0005)

    def thaw(self) -> None:
        """SIGCONT of the process group (after `freeze()`)."""
        self.signal(signal.SIGCONT)

    def terminate(self) -> None:
        """SIGTERM of the process (a graceful stop, as an operator or init system asks); returns at
        once, see `wait_exit()` and `stop()`."""
        if self.proc is None:
            raise RuntimeError(f"{self.label} was never started")
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)

    def stop(self, timeout_s: float = 20.0) -> int:
        """SIGTERM and its exit status; SIGKILL and AssertionError if it does not exit in time."""
        self.terminate()
        code = self.wait_exit(timeout_s)
        if code is None:
            self.kill()
            raise AssertionError(
                f"{self.label} did not exit within {timeout_s:g}s of SIGTERM\n{self.log_tail()}"
            )
        return code

    def disrupt(self, variant: str) -> None:
        """The failover scenarios' ways of losing a member: `sigkill` (kill()), `sigstop` (freeze())
        or `graceful` (terminate())."""
        if variant == "sigkill":
            self.kill()
        elif variant == "sigstop":
            self.freeze()
        elif variant == "graceful":
            self.terminate()
        else:
            raise ValueError(f"unknown variant {variant!r}; expected sigkill, sigstop or graceful")

    def wait_exit(self, timeout_s: float) -> int | None:
        """The exit status, or None if it is still running after `timeout_s` (or never started)."""
        if self.proc is None:
            return None
        try:
            return self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            return None

    def check_alive(self, doing: str) -> None:
        """AssertionError at once (with the log) if the daemon exited while `doing`."""
        if not self.alive:
            code = self.proc.poll() if self.proc else None
            raise AssertionError(f"{self.label} exited with {code} while {doing}\n{self.log_tail()}")

    # -- output ---------------------------------------------------------------------------------------

    def output(self) -> str:
        """Stdout of the current incarnation."""
        return read_from(self.out_path, self._out_offset)

    def errors(self) -> str:
        """Stderr (the daemon's log) of the current incarnation."""
        return read_from(self.log_path, self._log_offset)

    def all_output(self) -> str:
        """Everything every incarnation wrote."""
        if self.out_path == self.log_path:
            return read_from(self.log_path, 0)
        return read_from(self.out_path, 0) + read_from(self.log_path, 0)

    @property
    def name(self) -> str:
        """The node name from the "Node ID: ..." line of its output (the same in every incarnation)."""
        for line in read_from(self.out_path, 0).splitlines():
            if NODE_ID in line:
                return line.split(NODE_ID, 1)[1].split(")", 1)[0].strip()
        raise AssertionError(f"{self.label} printed no Node ID\n{self.log_tail()}")

    def has_name(self) -> bool:
        return NODE_ID in read_from(self.out_path, 0)

    def log_size(self) -> int:
        try:
            return self.log_path.stat().st_size
        except OSError:
            return 0

    def log_since(self, offset: int) -> str:
        """The log from byte `offset` on (e.g. what one incarnation wrote after a signal)."""
        return read_from(self.log_path, offset)

    def exit_note(self) -> str:
        """Why it is not running: its exit status and the last line of its log."""
        code = self.proc.poll() if self.proc is not None else None
        return f"{self.label} exited with status {code}: {last_line(self.log_path)}"

    def log_tail(self, lines: int = 30) -> str:
        """The last lines of the current incarnation's output (and log, when apart), for failures."""
        if self.out_path == self.log_path:
            return f"---- {self.label} log ----\n" + "\n".join(self.errors().splitlines()[-lines:])
        out = "\n".join(self.output().splitlines()[-lines:])
        err = "\n".join(self.errors().splitlines()[-lines:])
        return f"---- {self.label} stdout ----\n{out}\n---- {self.label} stderr ----\n{err}"
