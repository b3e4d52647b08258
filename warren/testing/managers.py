"""Managers formed the operator's way (`warren cluster init`, a join token, `warren manager join`), each on
an address of its own, and the admin certificate `cluster init` writes for them.

`ManagerDaemon` is one manager: its API, Raft and metrics addresses, its data dir and its two
commands. `form` founds a cluster on a first manager and joins the others one by one; what "joined"
means and where the join token comes from are the caller's (a test asserts on the CLI's own output, a
benchmark and the drill wait until the leader lists the new member as ready). `admin_credentials`
reads the certificate back from a config dir of the harness's own (WARREN_CONFIG_DIR), so that the
user's ~/.config is never written.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from warren.pki import userconfig
from warren.testing.process import WARREN, Daemon, Guard, free_ports

# Where a manager runs: its host address, its (API, Raft, metrics) ports (None: free ports on the host)
# and a command prefix (e.g. ["ip", "netns", "exec", NAME]; empty: none).
Host = tuple[str, tuple[int, int, int] | None, Sequence[str]]
M = TypeVar("M", bound="ManagerDaemon")


class ManagerDaemon(Daemon):
    """One manager daemon (`warren cluster init` / `manager join`) with its own addresses; `flags` come
    after the addresses on its command line (timers, `--manager-only`)."""

    def __init__(
        self,
        label: str,
        host: str,
        data_dir: Path,
        log_path: Path,
        *,
        cwd: Path,
        env: Mapping[str, str],
        ports: tuple[int, int, int] | None = None,
        flags: Sequence[str] = (),
        out_path: Path | None = None,
        prefix: Sequence[str] = (),
        guard: Guard = contextlib.nullcontext,
    ) -> None:
        super().__init__(label, [], log_path, cwd=cwd, env=env, out_path=out_path, prefix=prefix, guard=guard)
        self.host = host
        api_port, raft_port, metrics_port = ports or free_ports(3, host)
        self.api_addr = f"{host}:{api_port}"
        self.raft_addr = f"{host}:{raft_port}"
        self.metrics_addr = f"{host}:{metrics_port}"
        self.data_dir = data_dir
        self.flags = list(flags)

    def daemon_flags(self) -> list[str]:
        return [
            "--listen-addr", self.api_addr,
            "--raft-addr", self.raft_addr,
            "--metrics-addr", self.metrics_addr,
            "--data-dir", str(self.data_dir),
            *self.flags,
        ]  # fmt: skip

    def init(
        self,
        *,
        restore: str | os.PathLike[str] | None = None,
        restore_key: str | os.PathLike[str] | None = None,
    ) -> None:
        """Spawn `warren cluster init` (optionally `--restore FILE [--restore-key KEY]`); returns at
        once. A later `start()` reruns the same command: the manager resumes from its data dir."""
        self.argv = [*WARREN, "cluster", "init", *self.daemon_flags()]
        if restore is not None:
            self.argv += ["--restore", str(restore)]
        if restore_key is not None:
            self.argv += ["--restore-key", str(restore_key)]
        self.start()

    def join(self, token: str, via: str) -> None:
        """Spawn `warren manager join --token T --manager VIA`; returns at once."""
        self.argv = [*WARREN, "manager", "join", "--token", token, "--manager", via, *self.daemon_flags()]
        self.start()


def form(count: int, new: Callable[[], M], token: Callable[[M], str], joined: Callable[[M], Any]) -> M:
    """Found a cluster of `count` managers, each made by `new()` when its turn comes: `cluster init` on
    the first, then `manager join` of the others one by one through it, with the manager join token
    `token(first)`; `joined(m)` returns once `m` is a member (or raises). Returns the founder."""
    first = new()
    first.init()
    joined(first)
    if count > 1:
        secret = token(first)
        for _ in range(count - 1):
            m = new()
            m.join(secret, first.api_addr)
            joined(m)
    return first


def admin_credentials(config_dir: Path) -> userconfig.ClientCredentials | None:
    """The admin credentials `cluster init` wrote under `config_dir` (warren.pki.userconfig's layout;
    the newest cluster's, though a harness's dir only ever holds its own), or None before it has."""
    found: list[tuple[float, userconfig.ClientCredentials]] = []
    try:
        entries = list((config_dir / "clusters").iterdir())
    except FileNotFoundError:
        return None
    for entry in entries:
        ca = entry / userconfig.CA_FILE
        with contextlib.suppress(OSError):
            # admin.pem is written (atomically) after ca.crt: once it exists, both are complete.
            if (entry / userconfig.ADMIN_FILE).exists():
                found.append((ca.stat().st_mtime, userconfig.ClientCredentials(str(entry), ca.read_bytes())))
    return max(found, key=lambda pair: pair[0])[1] if found else None
