"""Entry point of the `warren` command: the parser tree and the one place errors become exit statuses.

Exit status: 0 success, 1 error, 2 usage error. Every error is one line on stderr (`warren: ...`).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from warren import __version__
from warren.cli.parsing import (
    HelpExit,
    UsageError,
    WarrenArgumentParser,
    add_client_options,
    add_group,
    new_parser,
    subcommands,
)
from warren.config import DEFAULT_MANAGER, MANAGER_ENV
from warren.errors import ConfigError, WarrenError

if TYPE_CHECKING:
    from warren.client import ManagerClient

# Builds the client a command talks through (tests inject one over httpx.MockTransport).
Connect = Callable[[str], "ManagerClient"]

DESCRIPTION = f"""\
Warren {__version__}: a container orchestrator for edge and LAN clusters. Managers keep the cluster
state in a Raft group; workers run the containers."""

EPILOG = f"""\
getting started:
  warren cluster init                       found a cluster (this machine is its first manager)
  warren cluster join-token manager         print the command that adds another manager
  warren service create web --image nginx --replicas 3
  warren apply -f stack.yaml                create or update services from a YAML file
  warren cluster info                       managers, leader and quorum

Client commands talk to --manager HOST:PORT (env {MANAGER_ENV}, default {DEFAULT_MANAGER}); any
manager will do, writes are forwarded to the leader. While the cluster has no leader, commands retry
for a while before giving up.

exit status: 0 success, 1 error, 2 usage error.
Run 'warren <command> --help' for more about a command."""


# Each group's or top-level command's parser is filled in by its module, imported only when the command
# line names it (`_chosen`): `warren service ls` loads service_cmds, not the whole tree.
GROUPS = ("cluster", "manager", "worker", "node", "service", "secret", "config", "volume")
TOP_COMMANDS = ("apply", "drill", "completion", "events", "dashboard")
# The top-level options that take a value (parsing.add_client_options), to find the command after them.
_VALUED = frozenset({"--manager", "--timeout", "-o", "--format"})


def build_parser(only: str | None = None) -> WarrenArgumentParser:
    """The whole command tree; with `only` (a group or top-level command), just that branch of it
    (the others are not even named: argparse never looks into a branch the command line does not take)."""

    def wanted(name: str) -> bool:
        return only is None or only == name

    parser = new_parser("warren", DESCRIPTION, EPILOG)
    add_client_options(parser)
    commands = subcommands(parser)

    if wanted("cluster") or wanted("manager"):  # daemon_cmds fills both
        from warren.cli import cluster_cmds, daemon_cmds

        cluster = add_group(commands, "cluster", "found a cluster; show it, issue join tokens, back it up",
                            "Found a cluster (init), show its state (info), issue join tokens, back it up.")
        cluster_sub = subcommands(cluster)
        manager = add_group(commands, "manager", "add this machine to a cluster as a manager",
                            "Join an existing cluster as an additional manager.", client=False)
        manager_sub = subcommands(manager)
        daemon_cmds.register(cluster_sub, manager_sub)
        cluster_cmds.register(cluster_sub)
    if wanted("worker"):
        from warren.cli import worker_cmds

        worker = add_group(
            commands, "worker", "run this machine as a worker (runs tasks)",
            "Start a worker agent: it joins the cluster and runs the tasks the leader assigns.", client=False,
        )
        worker_cmds.register(subcommands(worker))
    if wanted("node"):
        from warren.cli import node_cmds

        node = add_group(commands, "node", "list, inspect, drain and remove nodes",
                         "List, inspect, drain and remove the cluster's nodes (managers and workers).")
        node_cmds.register(subcommands(node))
    if wanted("service"):
        from warren.cli import service_cmds

        service = add_group(commands, "service", "create, update, list, inspect, scale and remove services",
                            "Create and manage services: container images run as tasks on the cluster.")
        service_cmds.register(subcommands(service))
    if wanted("secret"):
        from warren.cli import secret_cmds

        secret = add_group(commands, "secret", "create, list, inspect and remove secrets",
                           "Manage secrets: values (passwords, keys) stored encrypted and given only to the\n"
                           "tasks of services that name them, as files on tmpfs.")
        secret_cmds.register(subcommands(secret))
    if wanted("config"):
        from warren.cli import config_cmds

        config = add_group(
            commands, "config", "create, list, inspect and remove configs",
            "Manage configs: files (settings, public certificates) stored as they are and\n"
            "given read-only to the tasks of services that name them. A config never changes:\n"
            "new content is a new config, under a new name.",
        )
        config_cmds.register(subcommands(config))
    if wanted("volume"):
        from warren.cli import volume_cmds

        volume = add_group(commands, "volume", "list, inspect and remove the named volumes on the nodes",
                           "Named volumes: node-local storage that a service's tasks mount and go back to\n"
                           "(docs/volumes.md). List where they are, and remove those no service mounts.")
        volume_cmds.register(subcommands(volume))
    if wanted("apply"):
        from warren.cli import apply_cmds

        apply_cmds.register(commands)
    if wanted("drill"):
        from warren.cli import drill_cmds

        drill_cmds.register(commands)
    if wanted("completion"):
        from warren.cli import completion_cmds

        completion_cmds.register(commands)

    if wanted("events"):
        from warren.cli import events_cmds

        events_cmds.register(commands)
    if wanted("dashboard"):
        from warren.cli import dashboard_cmds

        dashboard_cmds.register(commands)
    return parser


def _chosen(argv: Sequence[str]) -> str | None:
    """The group or top-level command `argv` names (its first word that is neither an option nor an
    option's value), or None (no command, --help, a mistyped one: then the whole tree is built, so that
    help and errors list every command)."""
    words = iter(argv)
    for word in words:
        if word in _VALUED:
            next(words, None)
        elif not word.startswith("-"):
            return word if word in GROUPS or word in TOP_COMMANDS else None
        elif word in ("-h", "--help", "--version"):
            return None
    return None


def main(argv: Sequence[str] | None = None, *, connect: Connect | None = None) -> int:
    """Run one `warren` command; returns the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        args = ["--help"]
    elif args[0] == "help":  # `warren help service create` == `warren service create --help`
        args = [*args[1:], "--help"]
    try:
        return _run(args, connect)
    except HelpExit as exc:
        return exc.status
    except (UsageError, ConfigError) as exc:
        return _fail(str(exc), 2)
    except WarrenError as exc:
        return _fail(str(exc) or type(exc).__name__, 1)
    except BrokenPipeError:  # `warren node list | head`: the reader left, nothing to report
        _silence_stdout()
        return 1
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        return _fail(f"{where}{exc.strerror or exc}", 1)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        # The client wraps httpx's errors; a backstop so no traceback escapes. httpx is looked up, not
        # imported: a command that never loaded it cannot have raised one of its errors.
        httpx = sys.modules.get("httpx")
        if httpx is not None and isinstance(exc, httpx.HTTPError):
            return _fail(f"HTTP error: {exc}", 1)
        raise


def _run(argv: list[str], connect: Connect | None) -> int:
    args = build_parser(_chosen(argv)).parse_args(argv)
    daemon = getattr(args, "daemon_handler", None)
    if daemon is not None:
        status: int = daemon(args)
        return status
    handler = getattr(args, "client_handler", None)
    if handler is None:
        raise UsageError(_missing_command(getattr(args, "group_parser", None)))

    manager, source = getattr(args, "manager", None), "--manager"
    if not manager:
        manager, source = os.environ.get(MANAGER_ENV, "").strip(), MANAGER_ENV
    if not manager:
        manager, source = DEFAULT_MANAGER, "the default manager"
    args.format = getattr(args, "format", "table")
    timeout = getattr(args, "timeout", None)
    if connect is not None:
        client = connect(manager)
    else:
        from warren.client import ManagerClient
        from warren.config import ClientSettings

        settings = ClientSettings() if timeout is None else ClientSettings(retry_deadline_s=timeout)
        client = ManagerClient(manager, settings=settings, source=source)
    with client:
        status = handler(args, client)
    return status


def _missing_command(group: argparse.ArgumentParser | None) -> str:
    if group is None:
        return "missing command (see 'warren --help')"
    choices: list[str] = []
    for action in group._actions:
        if isinstance(action, argparse._SubParsersAction):
            choices = list(action.choices)
    return f"missing command: {group.prog} {'|'.join(choices)} (see '{group.prog} --help')"


def _fail(message: str, status: int) -> int:
    from warren.spec.validate import escape_controls

    # One line, whatever a server put in its message: control characters (LF too) shown as escapes.
    print(f"warren: {escape_controls(message, keep_tab_lf=False)}", file=sys.stderr)
    return status


def _silence_stdout() -> None:
    # Python flushes stdout again at exit; point it at /dev/null so that flush cannot fail too.
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


if __name__ == "__main__":
    sys.exit(main())
