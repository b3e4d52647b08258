"""One child process that answers JSON-line commands: spawn, call, kill, restart.

The protocol is the one of `tests.integration.raftnode` (and of `benches.pysyncobj_node`): commands
`{"id", "op", ...}` on stdin, one reply per command on stdout, plus `{"event": "ready"}` once serving and
`{"fatal": ...}` if it cannot start. A reader thread per child routes replies to their callers, so several
threads may call one node at once.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from warren.testing.process import daemon_env

REPO_ROOT = Path(__file__).resolve().parents[2]

Metrics = dict[str, Any]


class HarnessError(Exception):
    """The harness could not get an answer from a node (it died, hung or failed to start)."""


class NodeExited(HarnessError):
    """The node process exited before answering."""


class CallTimeout(HarnessError, TimeoutError):
    """The node did not answer a command within the caller's timeout (the command may still complete)."""


class NodeFatal(HarnessError):
    """The node reported a fatal error instead of becoming ready (e.g. it refused a corrupt log)."""

    def __init__(self, node_id: int, cls: str, message: str, returncode: int | None) -> None:
        super().__init__(f"node {node_id} fatal {cls}: {message} (exit code {returncode})")
        self.cls = cls
        self.message = message
        self.returncode = returncode


class RemoteError(Exception):
    """A command failed inside the node; `cls` is the exception class raised there (e.g. NotLeaderError)."""

    def __init__(
        self,
        node_id: int,
        op: str,
        cls: str,
        message: str,
        leader_id: int | None = None,
        leader_addr: str | None = None,
    ) -> None:
        super().__init__(f"node {node_id} {op}: {cls}: {message} (leader {leader_id} at {leader_addr})")
        self.node_id = node_id
        self.op = op
        self.cls = cls
        self.message = message
        self.leader_id = leader_id
        self.leader_addr = leader_addr


@dataclass
class _Pending:
    op: str
    done: threading.Event
    reply: dict[str, Any] | None = None


def processes_under(root: Path) -> list[str]:
    """Live processes whose command line mentions `root` or whose working directory is under it (a
    process-runtime task runs in its task dir): what a harness left behind under its own dir."""
    found = []
    needle = str(root)
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                if f.read().rsplit(b")", 1)[1].split()[0] == b"Z":
                    continue
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace")
            cwd = os.readlink(f"/proc/{entry}/cwd")
        except OSError:
            continue
        if needle in cmdline or cwd.startswith(needle):
            found.append(f"{entry}: {cmdline.strip()} (cwd {cwd})")
    return found


class NodeProc:
    """A child process answering JSON-line commands; survives `kill()`/`restart()` cycles."""

    def __init__(self, node_id: int, addr: str, data_dir: Path, argv: list[str], log_path: Path) -> None:
        self.id = node_id
        self.addr = addr
        self.data_dir = data_dir
        self.argv = argv
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.fatal: tuple[str, str] | None = None
        self.stray: list[str] = []  # stdout lines that were not protocol messages
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._pending: dict[int, _Pending] = {}
        self._ready = threading.Event()
        self._exited = threading.Event()
        self._reader: threading.Thread | None = None

    def __repr__(self) -> str:
        return f"NodeProc(id={self.id}, addr={self.addr}, pid={self.pid})"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def host(self) -> str:
        return self.addr.rsplit(":", 1)[0]

    @property
    def port(self) -> int:
        return int(self.addr.rsplit(":", 1)[1])

    # -- lifecycle ------------------------------------------------------------------------------------

    def start(self) -> None:
        """Spawn the process (returns at once; `wait_ready` waits for it to serve)."""
        if self.alive:
            raise HarnessError(f"node {self.id} is already running")
        # The previous incarnation's reader must be gone before its events and pending map are replaced.
        self._close_pipes()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.fatal = None
        self._ready = threading.Event()
        self._exited = threading.Event()
        env = daemon_env(pythonpath=REPO_ROOT)
        with open(self.log_path, "ab") as log:
            log.write(f"==== start node {self.id}: {' '.join(self.argv)}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                cwd=REPO_ROOT,
                env=env,
                start_new_session=True,  # a Ctrl-C aimed at pytest must not kill nodes mid-assertion
            )
        assert self.proc.stdout is not None
        self._reader = threading.Thread(
            target=self._read_loop,
            args=(self.proc, self.proc.stdout),
            name=f"node{self.id}-reader",
            daemon=True,
        )
        self._reader.start()

    def wait_ready(self, timeout: float = 20.0) -> None:
        """Block until the node says it is serving; NodeFatal if it refused to start."""
        if not self._ready.wait(timeout):
            raise HarnessError(f"node {self.id} not ready after {timeout}s\n{self.log_tail()}")
        if self.fatal is not None:
            cls, message = self.fatal
            raise NodeFatal(self.id, cls, message, self.wait_exit(10))
        if self._exited.is_set():
            raise NodeExited(
                f"node {self.id} exited (code {self.proc.poll() if self.proc else None}) "
                f"before ready\n{self.log_tail()}"
            )

    def wait_exit(self, timeout: float = 10.0) -> int | None:
        """The exit code, or None if the process is still running after `timeout` (or never started)."""
        if self.proc is None:
            return None
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def kill(self) -> None:
        """SIGKILL: no flush, no goodbye (what a power cut looks like to the peers)."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self._close_pipes()

    def stop(self, timeout: float = 15.0) -> None:
        """Clean shutdown through the `shutdown` op; SIGKILL if the node does not exit in time."""
        if self.alive:
            try:
                self.call("shutdown", timeout=timeout)
            except (HarnessError, RemoteError):
                pass  # it exits (or gets killed) below either way
            if self.wait_exit(timeout) is None:
                self.kill()
        self._close_pipes()

    def restart(self, timeout: float = 20.0) -> None:
        """Start again with the same id, address and data dir, and wait until it serves."""
        if self.alive:
            raise HarnessError(f"node {self.id} is still running; stop() or kill() it first")
        self.start()
        self.wait_ready(timeout)

    def _close_pipes(self) -> None:
        if self.proc is not None and self.proc.stdin is not None:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
        if self._reader is not None:
            self._reader.join(5)

    # -- protocol -------------------------------------------------------------------------------------

    def call(self, op: str, timeout: float = 10.0, **args: Any) -> Any:
        """Run `op` on the node and return its result; RemoteError if it failed there."""
        proc = self.proc
        if proc is None or proc.stdin is None or self._exited.is_set():
            raise NodeExited(f"node {self.id} is not running ({op})")
        req_id = next(self._ids)
        pending = _Pending(op, threading.Event())
        line = (json.dumps({"id": req_id, "op": op, **args}) + "\n").encode()
        with self._lock:
            self._pending[req_id] = pending
            try:
                proc.stdin.write(line)
                proc.stdin.flush()
            except (BrokenPipeError, ValueError, OSError) as exc:
                self._pending.pop(req_id, None)
                raise NodeExited(f"node {self.id} is not running ({op}): {exc}") from exc
        if not pending.done.wait(timeout):
            with self._lock:
                self._pending.pop(req_id, None)
            raise CallTimeout(f"node {self.id}: {op} got no reply within {timeout}s")
        reply = pending.reply
        if reply is None:
            raise NodeExited(f"node {self.id} exited during {op} (code {proc.poll()})\n{self.log_tail(20)}")
        if reply.get("ok"):
            return reply.get("result")
        raise RemoteError(
            self.id,
            op,
            str(reply.get("error")),
            str(reply.get("message")),
            reply.get("leader_id"),
            reply.get("leader_addr"),
        )

    def metrics(self, timeout: float = 5.0) -> Metrics:
        """warren_raft metrics, with the JSON-stringified node ids of `nodes`/`peers` turned back to ints."""
        m: Metrics = self.call("metrics", timeout=timeout)
        for key in ("nodes", "peers"):
            if isinstance(m.get(key), dict):
                m[key] = {int(k): v for k, v in m[key].items()}
        return m

    def state(self, timeout: float = 10.0) -> list[tuple[int, str]]:
        """Every (index, payload) the node's state machine has applied, in order."""
        return [(int(i), str(p)) for i, p in self.call("state", timeout=timeout)]

    def _read_loop(self, proc: subprocess.Popen[bytes], stdout: IO[bytes]) -> None:
        try:
            for raw in stdout:
                self._dispatch(raw.decode("utf-8", errors="replace").strip())
        finally:
            stdout.close()
            proc.wait()
            self._exited.set()
            self._ready.set()
            with self._lock:
                pending, self._pending = self._pending, {}
            for p in pending.values():
                p.done.set()  # reply stays None: the caller raises NodeExited

    def _dispatch(self, text: str) -> None:
        if not text:
            return
        try:
            msg = json.loads(text)
        except ValueError:
            self.stray.append(text)
            return
        if not isinstance(msg, dict):
            self.stray.append(text)
        elif "fatal" in msg:
            self.fatal = (str(msg["fatal"]), str(msg.get("message", "")))
            self._ready.set()
        elif msg.get("event") == "ready":
            self._ready.set()
        elif "id" in msg:
            with self._lock:
                pending = self._pending.pop(msg["id"], None)
            if pending is not None:
                pending.reply = msg
                pending.done.set()
        else:
            self.stray.append(text)

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return f"(no log at {self.log_path})"
        tail = "\n".join(text.splitlines()[-lines:])
        return f"---- node {self.id} log tail ({self.log_path}) ----\n{tail}"
