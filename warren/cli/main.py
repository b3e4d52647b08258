"""Entry point of the `warren` command: the parser tree and the one place errors become exit statuses.

Exit status: 0 success, 1 error, 2 usage error. Every error is one line on stderr (`warren: ...`).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

import httpx

from warren import __version__
from warren.cli import (
    apply_cmds,
    cluster_cmds,
    config_cmds,
    daemon_cmds,
    drill_cmds,
    node_cmds,
    secret_cmds,
    service_cmds,
    volume_cmds,
    worker_cmds,
)
from warren.cli.parsing import (
    HelpExit,
    UsageError,
    WarrenArgumentParser,
    add_client_options,
    add_group,
    new_parser,
    subcommands,
)
from warren.client import ManagerClient
from warren.config import DEFAULT_MANAGER, MANAGER_ENV, ClientSettings
from warren.errors import ConfigError, WarrenError
from warren.spec.validate import escape_controls

# Builds the client a command talks through (tests inject one over httpx.MockTransport).
Connect = Callable[[str], ManagerClient]

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


def build_parser() -> WarrenArgumentParser:
    parser = new_parser("warren", DESCRIPTION, EPILOG)
    add_client_options(parser)
    commands = subcommands(parser)

    cluster = add_group(commands, "cluster", "found a cluster; show it, issue join tokens, back it up",
                        "Found a cluster (init), show its state (info), issue join tokens, back it up.")
    cluster_sub = subcommands(cluster)
    manager = add_group(commands, "manager", "add this machine to a cluster as a manager",
                        "Join an existing cluster as an additional manager.", client=False)
    manager_sub = subcommands(manager)
    daemon_cmds.register(cluster_sub, manager_sub)
    cluster_cmds.register(cluster_sub)
    worker = add_group(commands, "worker", "run this machine as a worker (runs tasks)",
                       "Start a worker agent: it joins the cluster and runs the tasks the leader assigns.",
                       client=False)
    worker_cmds.register(subcommands(worker))

    node = add_group(commands, "node", "list, inspect, drain and remove nodes",
                     "List, inspect, drain and remove the cluster's nodes (managers and workers).")
    node_cmds.register(subcommands(node))

    service = add_group(commands, "service", "create, update, list, inspect, scale and remove services",
                        "Create and manage services: container images run as tasks on the cluster.")
    service_cmds.register(subcommands(service))
    secret = add_group(commands, "secret", "create, list, inspect and remove secrets",
                       "Manage secrets: values (passwords, keys) stored encrypted and given only to the\n"
                       "tasks of services that name them, as files on tmpfs.")
    secret_cmds.register(subcommands(secret))
    config = add_group(commands, "config", "create, list, inspect and remove configs",
                       "Manage configs: files (settings, public certificates) stored as they are and\n"
                       "given read-only to the tasks of services that name them. A config never changes:\n"
                       "new content is a new config, under a new name.")
    config_cmds.register(subcommands(config))
    volume = add_group(commands, "volume", "list, inspect and remove the named volumes on the nodes",
                       "Named volumes: node-local storage that a service's tasks mount and go back to\n"
                       "(docs/volumes.md). List where they are, and remove those no service mounts.")
    volume_cmds.register(subcommands(volume))
    apply_cmds.register(commands)
    drill_cmds.register(commands)
    return parser


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
    except httpx.HTTPError as exc:  # the client wraps these; a backstop so no traceback escapes
        return _fail(f"HTTP error: {exc}", 1)
    except BrokenPipeError:  # `warren node list | head`: the reader left, nothing to report
        _silence_stdout()
        return 1
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        return _fail(f"{where}{exc.strerror or exc}", 1)
    except KeyboardInterrupt:
        return 130


def _run(argv: list[str], connect: Connect | None) -> int:
    args = build_parser().parse_args(argv)
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
    settings = ClientSettings() if timeout is None else ClientSettings(retry_deadline_s=timeout)
    if connect is not None:
        client = connect(manager)
    else:
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
