"""The spec flags of `service create` and `service update`, and the API bodies they become.

`create` sends only what was given (the manager fills in the defaults). `update` sends only fields
whose meaning changes; a flag of a nested part (health, restart, update policy, resources) sends that
whole part, built from the flags over the service's current part, because the API replaces nested
parts whole. Map and list flags (--env, --label, --publish, --constraint, --device, --ulimit,
--sysctl) add to the current values on update; their `-rm` twins take away. --cap-add and --cap-drop
add to their lists on update, taking the capability out of the other list, as Docker does; an empty
--user, --workdir, --hostname or --stop-signal on update goes back to the default.
"""

from __future__ import annotations

import argparse
import typing
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from warren.cli import specs
from warren.cli.parsing import (
    UsageError,
    WarrenArgumentParser,
    capability,
    command,
    config_ref,
    constraint,
    device,
    duration,
    http_check,
    key_value,
    mount,
    non_negative_int,
    number,
    port,
    positive_int,
    publish,
    published_port,
    size,
    stop_signal,
    ulimit,
)
from warren.errors import InvalidError
from warren.formats import SIZE_HELP
from warren.spec import container as opts
from warren.spec.mounts import DEFAULT_VOLUME_POLICY, ConfigRef, VolumePolicy
from warren.spec.service import HealthCheck, RestartPolicy, ServiceSpec, UpdatePolicy, field_default

if TYPE_CHECKING:
    from warren.api.models import ServiceCreate, ServiceUpdate

# Where a body field came from on the command line, to name the flag in an error.
FLAG_OF = {
    "name": "NAME", "image": "--image", "command": "--command", "replicas": "--replicas", "mode": "--mode",
    "driver": "--driver", "env": "--env", "labels": "--label", "publish": "--publish",
    "constraints": "--constraint", "stop_timeout_s": "--stop-grace-period", "resources.cpus": "--cpus",
    "resources.memory": "--memory", "restart.condition": "--restart-policy",
    "restart.delay_s": "--restart-delay", "restart.max_attempts": "--restart-max-attempts",
    "health.cmd": "--health-cmd", "health.port": "--health-http/--health-tcp", "health.path": "--health-http",
    "health.interval_s": "--health-interval", "health.timeout_s": "--health-timeout",
    "health.retries": "--health-retries", "health.start_period_s": "--health-start-period",
    "update.parallelism": "--update-parallelism", "update.delay_s": "--update-delay",
    "update.order": "--update-order", "update.failure_action": "--update-failure-action",
    "update.monitor_s": "--update-monitor", "secrets": "--secret", "mounts": "--mount", "configs": "--config",
    "volume_policy": "--volume-policy", "discovery": "--no-discovery",
    "container.user": "--user", "container.workdir": "--workdir", "container.hostname": "--hostname",
    "container.network": "--network", "container.read_only": "--read-only", "container.init": "--init",
    "container.privileged": "--privileged", "container.cap_add": "--cap-add",
    "container.cap_drop": "--cap-drop",
    "container.devices": "--device", "container.ulimits": "--ulimit", "container.sysctls": "--sysctl",
    "container.stop_signal": "--stop-signal",
}
# Container option flags of one value: dest -> field; an empty text (update) is the default (None).
_CONTAINER_TEXT = {"user": "user", "workdir": "workdir", "hostname": "hostname", "stop_signal": "stop_signal"}
_CONTAINER_FLAGS = {**_CONTAINER_TEXT, "network": "network", "read_only": "read_only", "init": "init",
                    "privileged": "privileged"}
_HEALTH_KINDS = ("health_cmd", "health_http", "health_tcp")
_HEALTH_TIMING = {"health_interval": "interval_s", "health_timeout": "timeout_s", "health_retries": "retries",
                  "health_start_period": "start_period_s"}
_RESTART = {"restart_policy": "condition", "restart_delay": "delay_s", "restart_max_attempts": "max_attempts"}
_UPDATE = {"update_parallelism": "parallelism", "update_delay": "delay_s", "update_order": "order",
           "update_failure_action": "failure_action", "update_monitor": "monitor_s"}
_RESOURCES = {"cpus": "cpus", "memory": "memory"}


def add_spec_flags(parser: WarrenArgumentParser, *, update: bool) -> None:
    """The flags shared by create and update; on update every default is "unchanged"."""

    def default(text: str) -> str:
        return "" if update else f" (default {text})"

    def spec_default(part: type[Any], name: str, unit: str = "") -> str:
        # The spec's own default (warren.spec.service), in the flag's unit ("s" for durations).
        value = field_default(part, name)
        return default(f"{value:g}{unit}" if isinstance(value, float) else str(value))

    def flag(*names: str, help: str, **kwargs: Any) -> None:
        parser.add_argument(*names, help=help, **kwargs)

    flag("--image", required=not update, metavar="IMAGE", help="the container image, e.g. nginx:1.27"
         + ("" if update else "; required"))
    flag("--command", type=command, metavar="CMD",
         help="command to run instead of the image's default, split as a shell would"
         + default("the image's own") + "; needed with --driver process")
    flag("--replicas", type=non_negative_int, metavar="N", help="number of tasks of a replicated service"
         + spec_default(ServiceSpec, "replicas"))
    flag("--mode", choices=("replicated", "global"),
         help="replicated: N tasks anywhere; global: one task on every node"
         + (" (a switch replaces every task)" if update else " (default replicated)"))
    flag("--driver", choices=("docker", "process"),
         help="docker: a container of the image; process: CMD run as a plain process on the worker"
         + spec_default(ServiceSpec, "driver"))
    verb = "set (others are kept)" if update else "set"
    flag("--env", type=key_value, action="append", metavar="K=V",
         help=f"environment variable of the tasks to {verb} (repeatable)")
    flag("--label", type=key_value, action="append", metavar="K=V",
         help=f"label of the service to {verb} (repeatable; does not restart tasks)")
    flag("--publish", type=publish, action="append", metavar="SPEC",
         help="publish port T of the tasks as port P: mode=ingress|host,published=P,target=T"
         "[,protocol=tcp|udp], or P:T[/tcp|udp]. ingress (the default): every worker listens on P and "
         "forwards each connection to a healthy replica wherever it runs (TCP only); host: P on the node "
         "of each task, at most one task per node; a UDP port without a mode is host mode (repeatable)"
         + ("; replaces what P[/proto] published" if update else ""))
    flag("--constraint", type=constraint, action="append", metavar="EXPR",
         help="placement constraint: node.labels.K==V, node.labels.K!=V, node.name==N, node.role==R "
         "(repeatable; all must hold)")
    if update:
        flag("--secret-add", action="append", metavar="NAME",
             help="secret the tasks get (as for create's --secret; repeatable)")
        flag("--secret-rm", action="append", metavar="NAME",
             help="secret the tasks no longer get (repeatable)")
    else:
        flag("--secret", action="append", metavar="NAME",
             help="secret (warren secret create) each task gets as the file /run/secrets/NAME, or "
             "$WARREN_SECRETS_DIR/NAME for --driver process (repeatable)")
    mount_help = ("type=volume,src=NAME,dst=/path: the node's volume NAME (made on first use, kept "
                  "across task replacements; placed back on its node); type=bind,src=/host/path,dst=/path: "
                  "a path of the node, placed only on workers started with --allow-bind covering it; "
                  "type=tmpfs,dst=/path[,size=64m]: memory. Add ro (or readonly) for read-only. "
                  "For --driver process a volume or bind is given as $WARREN_MOUNT_<TARGET> "
                  "(docs/volumes.md)")
    if update:
        flag("--mount-add", type=mount, action="append", metavar="SPEC",
             help=f"mount to add, replacing the one at the same target: {mount_help} (repeatable)")
        flag("--mount-rm", action="append", metavar="TARGET",
             help="mount to remove, by its target path (repeatable)")
    else:
        flag("--mount", type=mount, action="append", metavar="SPEC", help=f"{mount_help} (repeatable)")
    mode = f"{field_default(ConfigRef, 'mode'):04o}"
    if update:
        flag("--config-add", type=config_ref, action="append", metavar="NAME[,target=PATH][,mode=OCTAL]",
             help="config the tasks get (as for create's --config; replaces one of the same name; "
             "repeatable)")
        flag("--config-rm", action="append", metavar="NAME",
             help="config the tasks no longer get (repeatable)")
    else:
        flag("--config", type=config_ref, action="append", metavar="NAME[,target=PATH][,mode=OCTAL]",
             help="config (warren config create) each task gets as a read-only file at target (default "
             f"/NAME), mode {mode} unless given; $WARREN_CONFIGS_DIR/NAME for --driver process (repeatable)")
    if update:
        flag("--env-rm", action="append", metavar="K", help="environment variable to remove (repeatable)")
        flag("--label-rm", action="append", metavar="K", help="label to remove (repeatable)")
        flag("--publish-rm", type=published_port, action="append", metavar="PUBLISHED[/tcp|udp]",
             help="published port to remove (repeatable)")
        flag("--constraint-rm", type=constraint, action="append", metavar="EXPR",
             help="placement constraint to remove (repeatable)")

    health = parser.add_argument_group(
        "health check", "At most one of --health-cmd, --health-http, --health-tcp"
        + (" (switches the kind; the timings are kept)." if update else "; default: none."))
    kinds = health.add_mutually_exclusive_group()
    kinds.add_argument("--health-cmd", type=command, metavar="CMD",
                       help="healthy when CMD, run in the task and split as a shell would, exits 0")
    kinds.add_argument("--health-http", type=http_check, metavar="PORT/PATH",
                       help="healthy when GET http://TASK:PORT/PATH answers 2xx or 3xx (PATH default /)")
    kinds.add_argument("--health-tcp", type=port, metavar="PORT",
                       help="healthy when TASK:PORT accepts a connection")
    health.add_argument("--health-interval", type=duration, metavar="DUR",
                        help="time between checks" + spec_default(HealthCheck, "interval_s", "s"))
    health.add_argument("--health-timeout", type=duration, metavar="DUR",
                        help="a check taking longer fails" + spec_default(HealthCheck, "timeout_s", "s"))
    health.add_argument("--health-retries", type=positive_int, metavar="N",
                        help="consecutive failures that make a task unhealthy (it is then replaced)"
                        + spec_default(HealthCheck, "retries"))
    health.add_argument("--health-start-period", type=duration, metavar="DUR",
                        help="failures in this time after start do not count"
                        + spec_default(HealthCheck, "start_period_s", "s"))

    restart = parser.add_argument_group("restart policy", "What happens when a task stops.")
    restart.add_argument("--restart-policy", choices=("any", "on-failure", "none"),
                         help="replace a task that stopped: on any exit, only on failure (exit code != 0), "
                         "or never" + spec_default(RestartPolicy, "condition"))
    restart.add_argument("--restart-delay", type=duration, metavar="DUR",
                         help="wait before the replacement starts"
                         + spec_default(RestartPolicy, "delay_s", "s"))
    restart.add_argument("--restart-max-attempts", type=non_negative_int, metavar="N",
                         help="replacements per slot before giving up, 0 for no limit"
                         + spec_default(RestartPolicy, "max_attempts"))

    resources = parser.add_argument_group("resources", "Limits of each task, reserved on its node.")
    resources.add_argument("--cpus", type=number, metavar="N",
                           help="CPUs, e.g. 0.5 or 2" + default("no limit"))
    resources.add_argument("--memory", type=size, metavar="SIZE",
                           help=f"memory: {SIZE_HELP}; at least 4m" + default("no limit"))

    rolling = parser.add_argument_group("rolling updates", "How a changed spec replaces the running tasks.")
    rolling.add_argument("--update-parallelism", type=positive_int, metavar="N",
                         help="tasks replaced at a time" + spec_default(UpdatePolicy, "parallelism"))
    rolling.add_argument("--update-delay", type=duration, metavar="DUR",
                         help="pause between batches" + spec_default(UpdatePolicy, "delay_s", "s"))
    rolling.add_argument("--update-order", choices=("stop-first", "start-first"),
                         help="stop the old task before starting its replacement, or the other way round"
                         + spec_default(UpdatePolicy, "order"))
    rolling.add_argument("--update-failure-action", choices=("pause", "rollback"),
                         help="when a new task fails: pause the update, or roll back to the previous spec"
                         + spec_default(UpdatePolicy, "failure_action"))
    rolling.add_argument("--update-monitor", type=duration, metavar="DUR",
                         help="a new task must stay running (and healthy) this long before the next batch"
                         + spec_default(UpdatePolicy, "monitor_s", "s"))
    parser.add_argument("--volume-policy", choices=typing.get_args(VolumePolicy),
                        help="when the node holding a task's named volume is down or drained: wait for it "
                        "(the task stays pending, saying why) or reschedule the task onto another node with "
                        "a new, empty volume (docs/volumes.md; changing it restarts no task)"
                        + default(DEFAULT_VOLUME_POLICY))
    names = "NAME or NAME.warren (its healthy tasks), tasks.NAME (all of them)"
    if update:
        parser.add_argument("--discovery", action=argparse.BooleanOptionalAction, default=None,
                            help=f"whether other tasks find this service's tasks by name: {names} "
                            "(changing it restarts no task)")
    else:
        parser.add_argument("--no-discovery", dest="discovery", action="store_const", const=False,
                            help=f"other tasks do not find this service's tasks by name ({names}; default: "
                            "they do)")
    # --stop-timeout: its name before Docker's was taken.
    parser.add_argument("--stop-grace-period", "--stop-timeout", dest="stop_timeout", type=duration,
                        metavar="DUR",
                        help="time a task gets to stop after its stop signal before SIGKILL"
                        + spec_default(ServiceSpec, "stop_timeout_s", "s"))
    _add_container_flags(parser, update=update)


def _add_container_flags(parser: WarrenArgumentParser, *, update: bool) -> None:
    clear = "; an empty value goes back to the default" if update else ""
    group = parser.add_argument_group(
        "container options",
        "How each task's container is set up (docs/container-options.md). The process runtime has only "
        "--user, --workdir, --stop-signal and --ulimit: a process task with any other is not placed.")
    flag = group.add_argument
    flag("--user", metavar="USER[:GROUP]",
         help="user (name or uid) and group the command runs as (default: the image's; for a process, the "
         "worker's, which must be root to run it as another)" + clear)
    flag("--workdir", metavar="DIR", help="absolute working directory (default: the image's; for a process, "
         "its task directory)" + clear)
    flag("--hostname", metavar="NAME", help="the container's host name (default: its short ID)" + clear)
    flag("--network", choices=("bridge", "host"),
         help="host: the node's own network stack (docker only; no --publish then)"
         + ("" if update else f" (default {field_default(opts.ContainerOptions, 'network')})"))
    flag("--read-only", action=argparse.BooleanOptionalAction, default=None,
         help="mount the container's root filesystem read-only" + ("" if update else " (default: no)"))
    flag("--init", action=argparse.BooleanOptionalAction, default=None,
         help="run an init as PID 1 that forwards signals and reaps zombies"
         + ("" if update else " (default: no)"))
    flag("--privileged", action=argparse.BooleanOptionalAction, default=None,
         help="every capability and device of the node: placed only on workers started with "
         "--allow-privileged" + ("" if update else " (default: no)"))
    flag("--cap-add", type=capability, action="append", metavar="CAP",
         help="Linux capability to add, e.g. NET_ADMIN (repeatable)")
    flag("--cap-drop", type=capability, action="append", metavar="CAP",
         help="Linux capability to drop, or ALL (repeatable)")
    flag("--device", type=device, action="append", metavar="HOST[:CONTAINER[:PERMS]]",
         help="device of the node given to each task (permissions some of r, w, m; default rwm): placed only "
         "on workers started with --allow-device covering it (repeatable)")
    flag("--ulimit", type=ulimit, action="append", metavar="NAME=SOFT[:HARD]",
         help=f"resource limit, e.g. nofile=1024:4096; names: {', '.join(sorted(opts.ULIMITS))} (repeatable)")
    flag("--sysctl", type=key_value, action="append", metavar="KEY=VALUE",
         help="kernel parameter of the task's own namespaces: net.*, kernel.shm*, kernel.msg*, kernel.sem, "
         "fs.mqueue.* (repeatable)")
    flag("--stop-signal", type=stop_signal, metavar="SIGNAL",
         help="signal that asks a task to stop, e.g. SIGINT (default: the image's STOPSIGNAL, else SIGTERM)"
         + clear)
    if update:
        flag("--device-rm", action="append", metavar="HOST",
             help="device (by host path) to remove (repeatable)")
        flag("--ulimit-rm", action="append", metavar="NAME", help="resource limit to remove (repeatable)")
        flag("--sysctl-rm", action="append", metavar="KEY", help="kernel parameter to remove (repeatable)")


def _container(args: argparse.Namespace, current: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The container part from the flags over `current` (None on create); None if no flag was given."""
    given = {field: getattr(args, dest) for dest, field in _CONTAINER_FLAGS.items()
             if getattr(args, dest) is not None}
    lists = ("cap_add", "cap_drop", "device", "ulimit", "sysctl", "device_rm", "ulimit_rm", "sysctl_rm")
    if not given and not any(getattr(args, name, None) for name in lists):
        return None
    part = dict(current or {})
    for field, value in given.items():
        if field in _CONTAINER_TEXT.values() and value == "":
            part.pop(field, None)  # back to the default
        else:
            part[field] = value
    for key, other, added in (("cap_add", "cap_drop", args.cap_add), ("cap_drop", "cap_add", args.cap_drop)):
        for cap in added or []:
            if current is not None:  # on update, adding to one list takes it from the other
                part[other] = [c for c in part.get(other) or [] if c != cap]
            part[key] = [*[c for c in part.get(key) or [] if c != cap], cap]
    if args.device or getattr(args, "device_rm", None):
        devices = {d.get("host"): d for d in _items(part.get("devices"))}
        for gone in getattr(args, "device_rm", None) or []:
            devices.pop(gone, None)
        for item in args.device or []:
            devices[item["host"]] = item
        part["devices"] = list(devices.values())
    for key, given_items, removed in (("ulimits", args.ulimit, getattr(args, "ulimit_rm", None)),
                                      ("sysctls", args.sysctl, getattr(args, "sysctl_rm", None))):
        if given_items or removed:
            values = dict(_mapping(part.get(key)))
            values.update(given_items or [])
            for gone in removed or []:
                values.pop(gone, None)
            part[key] = values
    return part


def create_body(args: argparse.Namespace) -> dict[str, Any]:
    """The POST /v1/services body: only what was given; checked against the API's model."""
    body: dict[str, Any] = {"name": args.name, "image": args.image}
    if args.mode == "global" and args.replicas is not None:
        raise UsageError("--replicas does not apply to --mode global (see 'warren service create --help')")
    for key in ("command", "replicas", "mode", "driver", "volume_policy", "discovery"):
        if getattr(args, key) is not None:
            body[key] = getattr(args, key)
    if args.env:
        body["env"] = dict(args.env)
    if args.label:
        body["labels"] = dict(args.label)
    if args.publish:
        body["publish"] = args.publish
    if args.constraint:
        body["constraints"] = list(dict.fromkeys(args.constraint))
    if args.secret:
        body["secrets"] = list(dict.fromkeys(args.secret))
    if args.config:
        body["configs"] = args.config
    if args.stop_timeout is not None:
        body["stop_timeout_s"] = args.stop_timeout
    for key, flags in (("restart", _RESTART), ("update", _UPDATE), ("resources", _RESOURCES)):
        part = _given(args, flags)
        if part:
            body[key] = part
    if args.mount:
        body["mounts"] = list(args.mount)  # two at one target are refused, not merged
    container = _container(args, None)
    if container:
        body["container"] = container
    health = _health(args, None, lambda: UsageError(
        "a health check needs its kind: give --health-cmd, --health-http or --health-tcp "
        "(see 'warren service create --help')"))
    if health is not None:
        body["health"] = health
    from warren.api.models import ServiceCreate  # pydantic loads only for commands that check a spec

    _check(ServiceCreate, body, "create")
    return body


def update_changes(args: argparse.Namespace, current: Mapping[str, Any]) -> dict[str, Any]:
    """The PATCH body: the fields whose meaning the flags change, over the `current` spec."""
    wanted: dict[str, Any] = {}
    mode = args.mode or current.get("mode")
    if mode == "global" and args.replicas is not None:
        raise UsageError("--replicas does not apply to a global service (see 'warren service update --help')")
    for key in ("image", "command", "replicas", "mode", "driver", "volume_policy", "discovery"):
        if getattr(args, key) is not None:
            wanted[key] = getattr(args, key)
    if args.stop_timeout is not None:
        wanted["stop_timeout_s"] = args.stop_timeout
    for key, given, removed in (("env", args.env, args.env_rm), ("labels", args.label, args.label_rm)):
        if given or removed:
            values = dict(_mapping(current.get(key)))
            values.update(given or [])
            for gone in removed or []:
                values.pop(gone, None)
            wanted[key] = values
    if args.publish or args.publish_rm:
        # A stored item without a mode was published before ingress existed: host mode, said here so
        # that rewriting the list does not turn it into ingress (the API's default for new input).
        ports = {(p.get("host"), p.get("protocol", "tcp")): {"mode": "host", **p}
                 for p in _items(current.get("publish"))}
        for gone in args.publish_rm or []:
            ports.pop(gone, None)
        for item in args.publish or []:
            ports[(item["host"], item["protocol"])] = item
        wanted["publish"] = list(ports.values())
    if args.constraint or args.constraint_rm:
        kept = [c for c in current.get("constraints") or [] if c not in (args.constraint_rm or [])]
        wanted["constraints"] = list(dict.fromkeys([*kept, *(args.constraint or [])]))
    if args.secret_add or args.secret_rm:
        kept = [s for s in current.get("secrets") or [] if s not in (args.secret_rm or [])]
        wanted["secrets"] = list(dict.fromkeys([*kept, *(args.secret_add or [])]))
    if args.config_add or args.config_rm:
        refs = {ref.get("name"): ref for ref in _items(current.get("configs"))}
        for gone in args.config_rm or []:
            refs.pop(gone, None)
        for ref in args.config_add or []:
            refs[ref["name"]] = ref
        wanted["configs"] = list(refs.values())
    for key, flags in (("restart", _RESTART), ("update", _UPDATE), ("resources", _RESOURCES)):
        part = _given(args, flags)
        if part:
            base = specs.canonical(key, current.get(key))
            wanted[key] = {**_mapping(base), **part}
    if args.mount_add or args.mount_rm:
        wanted["mounts"] = _mounts(_items(specs.canonical("mounts", current.get("mounts"))),
                                   args.mount_add or [], args.mount_rm or [])
    container = _container(args, _mapping(specs.canonical("container", current.get("container"))))
    if container is not None:
        wanted["container"] = container
    base_health = specs.canonical("health", current.get("health"))
    health = _health(args, _mapping(base_health) if base_health else None, lambda: InvalidError(
        f"service {args.name} has no health check to change: "
        "give --health-cmd, --health-http or --health-tcp"))
    if health is not None:
        wanted["health"] = health
    changes = specs.changed_fields(current, wanted)
    from warren.api.models import ServiceUpdate

    _check(ServiceUpdate, changes, "update")
    return changes


def _mounts(
    current: list[dict[str, Any]], added: list[dict[str, Any]], removed: list[str]
) -> list[dict[str, Any]]:
    """The mounts: `current` without those at a `removed` target, then `added` (each replacing the one
    at its target, in place; a new target comes last)."""
    gone = {target.rstrip("/") or "/" for target in removed}
    mounts = {m.get("target"): m for m in current if m.get("target") not in gone}
    for item in added:
        mounts[item.get("target")] = item
    return list(mounts.values())


def _given(args: argparse.Namespace, flags: Mapping[str, str]) -> dict[str, Any]:
    return {field: getattr(args, dest) for dest, field in flags.items() if getattr(args, dest) is not None}


def _health(args: argparse.Namespace, current: Mapping[str, Any] | None,
            no_kind: Callable[[], Exception]) -> dict[str, Any] | None:
    """The health part from the flags over `current` (None: none yet); None if no health flag was given."""
    timing = _given(args, _HEALTH_TIMING)
    kind_given = any(getattr(args, dest) is not None for dest in _HEALTH_KINDS)
    if not timing and not kind_given:
        return None
    # Switching kinds keeps the timings but not the old kind's target.
    health = {k: v for k, v in (current or {}).items() if k not in ("kind", "cmd", "port", "path")}
    if args.health_cmd is not None:
        health.update(kind="cmd", cmd=args.health_cmd)
    elif args.health_http is not None:
        health.update(kind="http", port=args.health_http[0], path=args.health_http[1])
    elif args.health_tcp is not None:
        health.update(kind="tcp", port=args.health_tcp)
    elif current is not None:
        health.update({k: current[k] for k in ("kind", "cmd", "port", "path") if k in current})
    else:
        raise no_kind()
    health.update(timing)
    return health


def _check(model: type[ServiceCreate] | type[ServiceUpdate], body: Mapping[str, Any], command: str) -> None:
    """Refuse, as a usage error naming the flag, what the manager would refuse."""
    from pydantic import ValidationError

    try:
        model.model_validate(body)
    except ValidationError as exc:
        where, what = specs.validation_problems(exc)[0]
        if where == "container":  # a check across the part names its field first: "sysctls: ..."
            field, sep, rest = what.partition(": ")
            if sep and f"container.{field.split('.')[0].split('[')[0]}" in FLAG_OF:
                where, what = f"container.{field.split('.')[0].split('[')[0]}", f"{field}: {rest}"
        parts = where.split(".")
        if parts[0] == "mounts" and len(parts) > 1 and parts[1].isdigit():  # which of several --mount
            what = f"mounts[{parts[1]}]{''.join('.' + p for p in parts[2:])}: {what}"
        flag = FLAG_OF.get(where) or FLAG_OF.get(".".join(parts[:2])) or FLAG_OF.get(parts[0], "")
        subject = f"argument {flag}: " if flag else ""
        raise UsageError(f"{subject}{what} (see 'warren service {command} --help')") from exc


def _mapping(value: object) -> dict[str, Any]:
    return dict(value) if isinstance(value, Mapping) else {}


def _items(value: object) -> list[dict[str, Any]]:
    return [dict(item) for item in value if isinstance(item, Mapping)] if isinstance(value, list) else []
