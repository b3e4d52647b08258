"""`warren worker start`: run a worker agent in the foreground.

Defaults live in warren.config only: a flag not given leaves the WorkerSettings field at its default.
"""

from __future__ import annotations

import argparse
import os
import re
from typing import Any

from warren.cli.output import safe_line
from warren.cli.parsing import Subparsers, add_command, add_host_access, allowed_paths, key_value
from warren.config import (
    DEFAULT_API_PORT,
    DEFAULT_MANAGER,
    MANAGER_ENV,
    RUNTIMES,
    WorkerSettings,
    default_data_dir,
)
from warren.errors import ConfigError
from warren.formats import join_host_port, split_host_port
from warren.spec.validate import control_char

_LABEL_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]*$")  # as api.models.LabelKey
_WORKER = WorkerSettings()

START_DESCRIPTION = """\
Start a worker agent: it joins the cluster with a worker join token, then runs the tasks the leader
assigns to it, through the Docker Engine and/or as plain processes. Runs in the foreground.

While no manager answers, the worker keeps its tasks running on its own (from its local cache) and
restarts crashed ones in place under their restart policy; it keeps trying every manager meanwhile.

SIGTERM or Ctrl-C stops the worker agent only: the tasks' containers and processes keep running, and
the next `warren worker start` on the same data dir adopts them. To move the tasks away first, run
`warren node drain NODE` and wait for `warren node inspect NODE` to show none left."""

START_EPILOG = f"""\
Rerunning the command on an existing data dir resumes this worker with its identity (node.json): no
token is needed then, and without --manager it talks to the managers it used last.

examples:
  warren worker start --token SWMTKN-1-... --manager 192.168.1.10:8080,192.168.1.11:8080
  warren worker start --token SWMTKN-1-... --manager 192.168.1.10:8080 --label zone=a --runtime process
  warren worker start                       (resume; managers from {MANAGER_ENV} or node.json)
"""


def register(worker: Subparsers) -> None:
    start = add_command(
        worker, "start", "join a cluster as a worker and run its tasks (runs in the foreground)",
        START_DESCRIPTION, epilog=START_EPILOG, client=False,
    )
    start.add_argument("--token", help="worker join token (from `warren cluster join-token worker`); only "
                                       "needed on the first start")
    start.add_argument("--manager", metavar="HOST:PORT[,HOST:PORT...]",
                       help="API addresses of the cluster's managers, tried in turn; any one will do "
                            f"(env {MANAGER_ENV}; default: the managers this worker used last, else "
                            f"{DEFAULT_MANAGER})")
    start.add_argument("--data-dir", metavar="DIR",
                       help="identity (node.json), task cache (worker.db) and process-runtime task files "
                            f"(default {os.path.join(default_data_dir(), 'worker')})")
    start.add_argument("--runtime", choices=RUNTIMES,
                       help="what runs tasks: docker (the Docker Engine), process (plain host processes, "
                            "unconfined, as this user: offered only when asked), docker,process (both), or "
                            f"auto (= docker) (default {_WORKER.runtime})")
    start.add_argument("--label", metavar="K=V", action="append", type=key_value, default=[],
                       help="node label for placement constraints (node.labels.K==V); repeatable")
    start.add_argument("--advertise-host", metavar="HOST",
                       help="address at which this machine's published ports are reached (default: the "
                            "local address used to reach the first manager)")
    start.add_argument("--dns-addr", metavar="IP:PORT|off",
                       help="where this worker's DNS server listens: it answers service names (NAME, "
                            "NAME.warren, tasks.NAME) from the cluster and forwards other names to this "
                            "host's nameservers; process tasks get its address in WARREN_DNS and a hosts "
                            "file in WARREN_HOSTS. Port 0: any free port; off: no server "
                            f"(default {_WORKER.dns_addr})")
    start.add_argument("--ingress-host", metavar="IP|off",
                       help="the address on which this worker listens on the cluster's published ingress "
                            "ports (`service create --publish published=P,target=T`): a connection to "
                            "IP:P is forwarded to a healthy replica of the service, on whichever node it "
                            "runs. 0.0.0.0: every IPv4 address of this host; off: this worker forwards "
                            f"nothing (default {_WORKER.ingress_host})")
    start.add_argument("--docker-network", metavar="NAME|off",
                       help="the Docker bridge network this worker's containers join (those not on "
                            "--network host), made at start if missing ({node}: this node's name); the DNS "
                            "server also listens on its gateway, port 53 (needs root or "
                            "CAP_NET_BIND_SERVICE), and containers resolve service names through it. off: "
                            "containers on Docker's default bridge, without service names "
                            f"(default {_WORKER.docker_network})")
    add_host_access(start, "this worker's")
    start.set_defaults(daemon_handler=run_start)


def build_settings(args: argparse.Namespace) -> WorkerSettings:
    """WorkerSettings from the flags given (validated); ConfigError names what is wrong."""
    fields: dict[str, Any] = {}
    if args.data_dir is not None:
        fields["data_dir"] = args.data_dir
    managers = args.manager if args.manager is not None else os.environ.get(MANAGER_ENV, "").strip()
    source = "--manager" if args.manager is not None else MANAGER_ENV
    if not managers:
        managers, source = _stored_managers(fields.get("data_dir") or _WORKER.resolved_data_dir), "node.json"
    if managers:
        fields["managers"] = _parse_managers(managers, source)
    if args.runtime is not None:
        fields["runtime"] = args.runtime
    if args.label:
        labels: dict[str, str] = {}
        for key, value in args.label:
            if not _LABEL_KEY.fullmatch(key) or len(key) > 253:  # fullmatch: "$" would let a final LF by
                raise ConfigError(f"--label {safe_line(key)}: {key!r} is not a valid label key "
                                  "(letters, digits, '.', '_', '/', '-'; starting with a letter or digit)")
            where = control_char(value)
            if where is not None:  # as the API's models.SafeText: it would refuse it
                raise ConfigError(f"--label {safe_line(key)}: the value must not contain control characters "
                                  f"(found {where})")
            labels[key] = value
        fields["labels"] = tuple(labels.items())
    if args.advertise_host is not None:
        host, port = split_host_port(args.advertise_host, field="--advertise-host", default_port=0)
        if port:
            raise ConfigError(f"--advertise-host {args.advertise_host!r} must be a host name or IP address "
                              "without a port")
        fields["advertise_host"] = host
    if args.dns_addr is not None:
        fields["dns_addr"] = None if args.dns_addr.strip().lower() == "off" else args.dns_addr.strip()
    if args.ingress_host is not None:
        host = args.ingress_host.strip()
        fields["ingress_host"] = None if host.lower() == "off" else host
    if args.docker_network is not None:
        network = args.docker_network.strip()
        fields["docker_network"] = None if network.lower() == "off" else network
    devices = allowed_paths(args.allow_device)
    if devices:
        fields["allow_devices"] = devices
    binds = allowed_paths(args.allow_bind)
    if binds:
        fields["allow_binds"] = binds
    if args.allow_privileged:
        fields["allow_privileged"] = True
    settings = WorkerSettings(**fields)
    settings.validate()
    return settings


def _parse_managers(text: str, source: str) -> tuple[str, ...]:
    managers = []
    for part in text.split(","):
        if part.strip():
            host, port = split_host_port(part, field=source, default_port=DEFAULT_API_PORT)
            managers.append(join_host_port(host, port))
    if not managers:
        raise ConfigError(f"{source} names no manager (expected HOST:PORT[,HOST:PORT...])")
    return tuple(managers)


def _stored_managers(data_dir: str) -> str:
    from warren.worker import identity

    me = identity.load(data_dir) if os.path.isdir(data_dir) else None
    return ",".join(me.managers) if me is not None else ""


def run_start(args: argparse.Namespace) -> int:
    settings = build_settings(args)
    from warren.worker import daemon  # imported late: `warren --help` need not load the worker

    return daemon.run_worker(settings, token=args.token)
