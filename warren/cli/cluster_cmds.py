"""`warren cluster info | join-token | backup`: the cluster as a whole."""

from __future__ import annotations

import argparse
import contextlib
import os
from collections.abc import Mapping
from typing import Any

from warren.cli.output import Format, cell, plural, render, safe_line, table
from warren.cli.parsing import Subparsers, add_command, duration
from warren.client import ManagerClient
from warren.config import DEFAULT_API_PORT
from warren.durable import fsync_dir
from warren.errors import ConfigError, WarrenError
from warren.formats import format_duration, split_host_port


def register(cluster: Subparsers) -> None:
    info = add_command(
        cluster, "info", "show the managers, the leader and the Raft quorum",
        "Show the cluster's ID, its Raft quorum, its leader and every manager's role and status,\n"
        "as seen by the manager answering (--manager).",
    )
    info.set_defaults(client_handler=cluster_info)

    token = add_command(
        cluster, "join-token", "issue a token for a new manager or worker",
        "Issue a join token (valid 24h, shown once) and print the command that joins a node with it.",
        epilog="examples:\n  warren cluster join-token manager\n"
               "  warren cluster join-token worker --rotate -q\n",
    )
    token.add_argument("role", choices=("manager", "worker"), help="the role the token admits")
    token.add_argument("--rotate", action="store_true",
                       help="also revoke every earlier token of this role")
    token.add_argument("--ttl", type=duration, metavar="DUR",
                       help="how long the token stays valid (e.g. 1h, 30m; default 24h, at most 30 days)")
    token.add_argument("-q", "--quiet", action="store_true", help="print only the token")
    token.set_defaults(client_handler=join_token)

    backup = add_command(
        cluster, "backup", "save a consistent copy of the cluster state to a file",
        "Save a consistent copy of the cluster state (every acknowledged write) to FILE.\n"
        "Found a new cluster from it with `warren cluster init --restore FILE`.",
    )
    backup.add_argument("--output", dest="file", metavar="FILE", required=True,
                        help="where to write the backup (written to FILE.tmp, then renamed)")
    backup.add_argument("--force", action="store_true", help="overwrite FILE if it exists")
    backup.set_defaults(client_handler=cluster_backup)


# -- info -------------------------------------------------------------------------------------------

def cluster_info(args: argparse.Namespace, client: ManagerClient) -> int:
    info = client.cluster_info()
    print(render(info, args.format, lambda: format_cluster_info(info)), end="")
    return 0


def format_cluster_info(info: Mapping[str, Any]) -> str:
    """The seed's `cluster info` text."""
    lines = [f"Cluster ID: {cell(info.get('cluster_id'))}", _quorum_line(info.get("quorum") or {})]
    leader = info.get("leader")
    if isinstance(leader, Mapping):
        lines.append(f"Leader: {cell(leader.get('name'))} ({cell(leader.get('api_addr'))})")
    else:
        lines.append("Leader: none (no quorum; writes are refused)")
    lines += ["", "Managers:"]
    managers = info.get("managers") or []
    rows = [
        [cell(m.get("name")), cell(m.get("api_addr")), cell(m.get("role") or "unknown").capitalize(),
         cell(m.get("status"))]
        for m in managers if isinstance(m, Mapping)
    ]
    text = "\n".join(lines) + "\n" + (table(rows, indent="  ") if rows else "  (none)\n")
    return text + f"\nWorkers: {cell(info.get('workers', 0))}\n"


def _quorum_line(quorum: Mapping[str, Any]) -> str:
    managers = int(quorum.get("managers", 0))
    needed = quorum.get("needed", managers // 2 + 1)
    if quorum.get("ok", True):
        return f"Raft Quorum: {plural(managers, 'manager')} (needs {needed} for majority)"
    reachable = quorum.get("reachable", 0)
    return (f"Raft Quorum: LOST ({reachable} of {plural(managers, 'manager')} reachable, "
            f"needs {needed} for majority)")


# -- join-token -------------------------------------------------------------------------------------

def join_token(args: argparse.Namespace, client: ManagerClient) -> int:
    answer = client.create_join_token(args.role, rotate=args.rotate, ttl_s=args.ttl)
    if args.quiet:
        print(safe_line(str(answer["token"])))
        return 0
    print(render(answer, args.format, lambda: format_join_token(answer, _join_address(client))), end="")
    return 0


def format_join_token(answer: Mapping[str, Any], manager: str) -> str:
    """The seed's `cluster join-token` text: the token and the command that uses it."""
    token, role = safe_line(str(answer["token"])), answer.get("role", "manager")
    ttl = answer.get("ttl_s")
    expiry = f" (expires in {format_duration(float(ttl))})" if isinstance(ttl, int | float) else ""
    if role == "worker":
        command = ["warren worker start \\", f"  --token {token} \\", f"  --manager {manager}"]
        where = "On worker nodes, run:"
    else:
        command = ["warren manager join \\", f"  --token {token} \\", f"  --manager {manager} \\",
                   f"  --advertise-addr <this-node-ip>:{DEFAULT_API_PORT}"]
        where = "On other nodes, run:"
    return "\n".join([f"Join Token{expiry}:", token, "", where, *command]) + "\n"


_LOOPBACK = ("localhost", "::1", "0.0.0.0", "::")


def _join_address(client: ManagerClient) -> str:
    """The manager address to put in the join command: the one we talked to, unless that is a loopback
    address other machines cannot use; then the answering manager's advertised API address."""
    try:
        host, _ = split_host_port(client.address, default_port=DEFAULT_API_PORT)
    except ConfigError:  # a URL (http://...): show it as given
        return client.address
    if not (host in _LOOPBACK or host.startswith("127.")):
        return client.address
    try:
        info = client.cluster_info()
    except WarrenError:
        return client.address
    for manager in info.get("managers") or []:
        if not isinstance(manager, Mapping) or not manager.get("api_addr"):
            continue
        if manager.get("name") == info.get("node"):
            return str(manager["api_addr"])
    leader = info.get("leader")
    if isinstance(leader, Mapping) and leader.get("api_addr"):
        return str(leader["api_addr"])
    return client.address


# -- backup -----------------------------------------------------------------------------------------

def cluster_backup(args: argparse.Namespace, client: ManagerClient) -> int:
    path: str = args.file
    if os.path.lexists(path) and not args.force:
        raise WarrenError(f"{path} already exists (use --force to overwrite it)")
    tmp = f"{path}.tmp"
    try:
        with open(tmp, "wb") as sink:
            size = client.backup(sink)
            sink.flush()
            os.fsync(sink.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(os.path.dirname(os.path.abspath(path)))
    fmt: Format = args.format
    result = {"file": path, "bytes": size}
    print(
        render(
            result,
            fmt,
            lambda: f"Backup written to {path} ({size} bytes)\n"
            "Secrets and the CA key in it are sealed: restoring them needs a manager's "
            "<data-dir>/tls/data.key (--restore-key); keep a copy of it apart from the backups.\n",
        ),
        end="",
    )
    return 0
