"""`warren dashboard`: serve the web dashboard on this machine (warren/dashboard, docs/dashboard.md)."""

from __future__ import annotations

import argparse
import ipaddress
import os
import sys

from warren.cli.parsing import Subparsers, UsageError, add_command
from warren.config import DEFAULT_MANAGER, MANAGER_ENV, DashboardSettings

_DEFAULTS = DashboardSettings()

DESCRIPTION = f"""\
Serve the web dashboard on this machine: the cluster's managers, nodes, services and their tasks, the
live event stream and the failover timeline. A local web server (default {_DEFAULTS.bind}:{_DEFAULTS.port})
serves the pages and passes their API calls to the managers with your admin certificate, as `kubectl
proxy` does: the browser needs no certificate and nothing new listens on the cluster's ports.

It prints the address to open (with this run's token) and opens nothing by itself. Only the calls the
pages make are passed on (reads, scale, rollback, events): never secrets, join tokens or backups."""

EPILOG = """\
examples:
  warren dashboard
  warren dashboard --manager 10.0.0.1:8080,10.0.0.2:8080 --port 9000
  ssh -L 8090:127.0.0.1:8090 admin-host   (then run it on admin-host and open the address here)
"""


def register(commands: Subparsers) -> None:
    # Not a client command's options (-o, --timeout mean nothing to a server): only --manager.
    parser = add_command(commands, "dashboard", "serve the web dashboard on this machine (127.0.0.1)",
                         DESCRIPTION, epilog=EPILOG, client=False)
    parser.add_argument("--manager", metavar="HOST:PORT", default=argparse.SUPPRESS,
                        help="the managers to proxy to, tried in turn: HOST:PORT[,HOST:PORT...] "
                             f"(env {MANAGER_ENV}; default {DEFAULT_MANAGER})")
    parser.add_argument("--port", type=int, metavar="PORT",
                        help=f"port to serve on; 0 picks a free one (default {_DEFAULTS.port})")
    parser.add_argument("--bind", metavar="ADDR",
                        help=f"address to serve on (default {_DEFAULTS.bind}); one that is not loopback "
                             "needs --allow-remote")
    parser.add_argument("--allow-remote", action="store_true",
                        help="serve on a --bind address other machines can reach: anyone there who gets "
                             "the printed address acts on the cluster as you")
    parser.add_argument("--token-file", metavar="FILE",
                        help="keep the token in FILE (made owner-only if absent) so that an open page goes "
                             "on working after a restart (default: a new token each run)")
    parser.set_defaults(daemon_handler=run)


def check_bind(bind: str, allow_remote: bool) -> list[str]:
    """The warnings for `bind`; UsageError if it may not be used."""
    from warren.dashboard.guard import is_loopback

    if is_loopback(bind):
        return []
    try:
        address = ipaddress.ip_address(bind)
    except ValueError:
        raise UsageError(f"--bind {bind}: give an IP address") from None
    if address.is_unspecified:
        raise UsageError(f"--bind {bind}: name one address, not every address")
    if not allow_remote:
        raise UsageError(f"--bind {bind} is reachable from other machines; add --allow-remote if you mean it")
    return [f"warning: the dashboard on {bind} acts on the cluster with your admin certificate for anyone "
            "who has its address; plain HTTP: use it on a trusted network only"]


def run(args: argparse.Namespace) -> int:
    from warren.client.wire import resolve
    from warren.dashboard.server import serve

    bind = args.bind if args.bind is not None else _DEFAULTS.bind
    port = args.port if args.port is not None else _DEFAULTS.port
    for warning in check_bind(bind, args.allow_remote):
        print(f"warren: {warning}", file=sys.stderr)
    if not 0 <= port < 65536:
        raise UsageError(f"--port must be 0-65535, not {port}")
    settings = DashboardSettings(bind=bind, port=port)
    manager, source = getattr(args, "manager", None), "--manager"
    if not manager:
        manager, source = os.environ.get(MANAGER_ENV, "").strip(), MANAGER_ENV
    if not manager:
        manager, source = DEFAULT_MANAGER, "the default manager"
    bases, uds, verify = resolve(manager, source=source)

    def announce(url: str) -> None:
        print(f"Dashboard of the cluster at {manager}:\n  {url}\n(Ctrl-C stops it)", flush=True)

    try:
        serve(bases, uds, verify, settings, announce, args.token_file)
    except KeyboardInterrupt:
        pass
    return 0
