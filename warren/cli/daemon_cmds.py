"""`warren cluster init` and `warren manager join`: build ManagerSettings, then run the manager daemon.

Defaults live in warren.config only: a flag not given leaves the ManagerSettings field at its default.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from warren.cli.parsing import (
    Subparsers,
    UsageError,
    add_command,
    add_host_access,
    allowed_paths,
    duration,
    non_negative_int,
    positive_int,
)
from warren.config import (
    DEFAULT_API_PORT,
    DEFAULT_LISTEN_ADDR,
    DEFAULT_METRICS_ADDR,
    DEFAULT_RAFT_PORT,
    HEARTBEATS_PER_TIMEOUT,
    RUNTIMES,
    ManagerSettings,
    OrchestratorSettings,
    RaftSettings,
    default_data_dir,
)
from warren.errors import ConfigError
from warren.formats import join_host_port, split_host_port

_RAFT = RaftSettings()
_ORCH = OrchestratorSettings()
_MANAGER = ManagerSettings()

INIT_EPILOG = """\
Rerunning the same command on an existing data dir resumes this manager with its identity and state.

examples:
  warren cluster init --advertise-addr 192.168.1.10:8080
  warren cluster init --raft-heartbeat-timeout 1s --raft-election-timeout 1s    (WAN)
  warren cluster init --restore warren-backup.db
"""

JOIN_EPILOG = """\
Get a token on an existing manager with `warren cluster join-token manager`. Rerunning the command on
an existing data dir resumes this manager; --token and --manager are then not needed.

example:
  warren manager join --token SWMTKN-1-... --manager 192.168.1.10:8080 --advertise-addr 192.168.1.11:8080
"""


def register(cluster: Subparsers, manager: Subparsers) -> None:
    init = add_command(
        cluster, "init", "start a manager that founds a new cluster (runs in the foreground)",
        "Found a new cluster: start a single-node Raft group with this machine as its first manager.\n"
        "Runs in the foreground until SIGTERM or Ctrl-C.",
        epilog=INIT_EPILOG, client=False,
    )
    _add_manager_flags(init)
    init.add_argument("--restore", metavar="BACKUP_FILE",
                      help="found the cluster from a backup made by `warren cluster backup`")
    init.add_argument("--restore-key", metavar="DATA_KEY_FILE",
                      help="with --restore: the cluster data key of the backed-up cluster (any of its "
                           "managers' <data-dir>/tls/data.key); keeps its CA (so its join tokens and "
                           "workers' certificates stay valid) and its secrets. Without it the restored "
                           "cluster gets a new CA and secrets are not restored")
    init.set_defaults(daemon_handler=run_init)

    join = add_command(
        manager, "join", "join an existing cluster as a manager (runs in the foreground)",
        "Join an existing cluster as an additional manager (a Raft voter once it has caught up).\n"
        "Runs in the foreground until SIGTERM or Ctrl-C.",
        epilog=JOIN_EPILOG, client=False,
    )
    join.add_argument("--token", help="manager join token (from `warren cluster join-token manager`)")
    join.add_argument("--manager", metavar="HOST:PORT", default=argparse.SUPPRESS,
                      help="API address of a manager of the cluster to join")
    _add_manager_flags(join)
    join.set_defaults(daemon_handler=run_join)


def _add_manager_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--listen-addr", metavar="HOST:PORT",
                        help=f"where the HTTP API listens (default {DEFAULT_LISTEN_ADDR})")
    parser.add_argument("--advertise-addr", metavar="HOST[:PORT]",
                        help="API address other nodes and clients use to reach this manager (default: the "
                             "listen address, 127.0.0.1 for a wildcard host; the port defaults to the "
                             "listen port)")
    parser.add_argument("--raft-addr", metavar="HOST[:PORT]",
                        help=f"Raft transport address (default: the advertise host, port "
                             f"{DEFAULT_RAFT_PORT})")
    parser.add_argument("--metrics-addr", metavar="HOST:PORT",
                        help=f"Prometheus /metrics, /health and /ready (default {DEFAULT_METRICS_ADDR})")
    parser.add_argument("--data-dir", metavar="DIR",
                        help=f"state, Raft log and identity of this node (default {default_data_dir()})")
    parser.add_argument("--manager-only", action="store_true", default=None,
                        help="run no local worker next to the manager")
    parser.add_argument("--runtime", choices=RUNTIMES,
                        help="runtime of the local worker: auto (= docker), docker, process (unconfined "
                             "host commands as this user: only when asked) or docker,process "
                             f"(default {_MANAGER.local_worker_runtime})")
    add_host_access(parser, "the local worker's")
    parser.add_argument("--heartbeat-period", metavar="DUR", type=duration,
                        help="how often workers call the leader (it tells them) "
                             f"(default {_ms(_ORCH.heartbeat_period_s)})")
    parser.add_argument("--node-down-grace", metavar="DUR", type=duration,
                        help="a worker not heard from for this long is written down and its tasks are "
                             "placed elsewhere; must exceed --heartbeat-period "
                             f"(default {_ms(_ORCH.node_down_grace_s)})")
    parser.add_argument("--cert-expiry", metavar="DUR", type=duration,
                        help="node certificates this manager signs are valid this long; nodes renew "
                             "theirs automatically halfway through "
                             f"(default {_MANAGER.node_cert_lifetime_s / 3600:g}h)")
    parser.add_argument("--raft-heartbeat-timeout", metavar="DUR", type=duration,
                        help="a follower that hears nothing from a leader for DUR (plus a random part, "
                             "see --raft-election-timeout) stands for election; the leader sends "
                             f"heartbeats every 1/{HEARTBEATS_PER_TIMEOUT} of it "
                             f"(default {_ms(_RAFT.heartbeat_timeout_s)}: heartbeats every "
                             f"{_ms(_RAFT.heartbeat_interval_s)})")
    parser.add_argument("--raft-election-timeout", metavar="DUR", type=duration,
                        help="the random spread added to the heartbeat timeout, so managers do not stand "
                             "together: a follower stands after a random time between the heartbeat "
                             "timeout and their sum, and a candidate that has not won tries again as "
                             "long; at least the heartbeat timeout (default: the heartbeat timeout, "
                             f"{_ms(_RAFT.election_timeout_s)}). A dead leader is replaced after about "
                             "2H+E to 2H+2E, H and E being the two timeouts, as its leader lease of H+E runs "
                             f"first ({_ms(2 * _RAFT.heartbeat_timeout_s + _RAFT.election_timeout_s)} to "
                             f"{_ms(2 * _RAFT.election_timeout_max_s)} by default, "
                             "3 to 4s with 1s and 1s)")
    parser.add_argument("--raft-snapshot-threshold", metavar="N", type=positive_int,
                        help="take a snapshot of the state (and compact the log) every N committed entries "
                             f"(default {_RAFT.snapshot_threshold})")
    parser.add_argument("--raft-log-keep", metavar="N", type=non_negative_int,
                        help="entries kept in the log behind a snapshot, so a lagging manager catches up "
                             f"from the log instead of a whole snapshot (default "
                             f"{_RAFT.max_in_snapshot_log_to_keep})")


def _ms(seconds: float) -> str:
    return f"{round(seconds * 1000)}ms"


def build_settings(args: argparse.Namespace) -> ManagerSettings:
    """ManagerSettings from the flags given (validated); ConfigError names what is wrong."""
    fields: dict[str, Any] = {}
    if args.listen_addr is not None:
        fields["listen_addr"] = args.listen_addr
    if args.advertise_addr is not None:
        listen = args.listen_addr if args.listen_addr is not None else DEFAULT_LISTEN_ADDR
        _, listen_port = split_host_port(listen, field="--listen-addr", default_port=DEFAULT_API_PORT)
        fields["advertise_addr"] = _with_port(args.advertise_addr, listen_port, "--advertise-addr")
    if args.raft_addr is not None:
        fields["raft_addr"] = _with_port(args.raft_addr, DEFAULT_RAFT_PORT, "--raft-addr")
    if args.metrics_addr is not None:
        fields["metrics_addr"] = args.metrics_addr
    if args.data_dir is not None:
        fields["data_dir"] = args.data_dir
    if args.manager_only:
        fields["manager_only"] = True
    if args.runtime is not None:
        fields["local_worker_runtime"] = args.runtime
    devices = allowed_paths(args.allow_device)
    if devices:
        fields["local_worker_allow_devices"] = devices
    binds = allowed_paths(args.allow_bind)
    if binds:
        fields["local_worker_allow_binds"] = binds
    if args.allow_privileged:
        fields["local_worker_allow_privileged"] = True
    if args.cert_expiry is not None:
        fields["node_cert_lifetime_s"] = args.cert_expiry
    raft: dict[str, Any] = {}
    if args.raft_heartbeat_timeout is not None or args.raft_election_timeout is not None:
        try:
            timers = RaftSettings.from_timeouts(args.raft_heartbeat_timeout, args.raft_election_timeout)
        except ConfigError as exc:
            raise ConfigError(f"{exc} ({_FLAG_HINTS[exc.fields]})", fields=exc.fields) from exc
        raft["heartbeat_interval_s"] = timers.heartbeat_interval_s
        raft["election_timeout_min_s"] = timers.election_timeout_min_s
        raft["election_timeout_max_s"] = timers.election_timeout_max_s
    if args.raft_snapshot_threshold is not None:
        raft["snapshot_threshold"] = args.raft_snapshot_threshold
    if args.raft_log_keep is not None:
        raft["max_in_snapshot_log_to_keep"] = args.raft_log_keep
    if raft:
        fields["raft"] = dataclasses.replace(RaftSettings(), **raft)
    orchestrator: dict[str, Any] = {}
    if args.heartbeat_period is not None:
        orchestrator["heartbeat_period_s"] = args.heartbeat_period
    if args.node_down_grace is not None:
        orchestrator["node_down_grace_s"] = args.node_down_grace
    if orchestrator:
        fields["orchestrator"] = dataclasses.replace(OrchestratorSettings(), **orchestrator)
    settings = ManagerSettings(**fields)
    try:
        settings.validate()
    except ConfigError as exc:
        hint = _FLAG_HINTS.get(exc.fields)
        if hint is None:
            raise
        raise ConfigError(f"{exc} ({hint})", fields=exc.fields) from exc
    return settings


# What to tell the user, in flags, when a rule tying settings together is broken (ConfigError.fields).
_FLAG_HINTS: dict[tuple[str, ...], str] = {
    ("heartbeat_timeout_s", "election_timeout_s"):
        "heartbeat_timeout_s is --raft-heartbeat-timeout, election_timeout_s is --raft-election-timeout",
    ("node_down_grace_s", "heartbeat_period_s"): "--node-down-grace must be longer than --heartbeat-period",
}


def _with_port(addr: str, default_port: int, flag: str) -> str:
    """"host:port" from "host:port" or a bare host (given `default_port`)."""
    host, port = split_host_port(addr, field=flag, default_port=default_port)
    return join_host_port(host, port)


def run_init(args: argparse.Namespace) -> int:
    settings = build_settings(args)
    from warren.daemons import manager as daemon  # imported late: `warren --help` need not load the manager

    if args.restore_key is not None and args.restore is None:
        raise UsageError("--restore-key needs --restore")
    return daemon.run_init(settings, restore=args.restore, restore_key=args.restore_key)


def run_join(args: argparse.Namespace) -> int:
    settings = build_settings(args)
    from warren.daemons import manager as daemon

    return daemon.run_join(settings, token=args.token, manager=getattr(args, "manager", None))
