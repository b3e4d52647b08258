"""`warren service create | update | rollback | scale | list | inspect | ps | logs | rm`: what the
cluster runs."""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from warren.cli import specs, waiting
from warren.cli.converge import Change, Kind
from warren.cli.output import (
    Column,
    age,
    cell,
    plural,
    render,
    render_list,
    render_object,
    safe,
    shorten,
    table,
)
from warren.cli.parsing import Subparsers, add_command, non_negative_int, tail_lines
from warren.cli.service_flags import add_spec_flags, create_body, update_changes
from warren.client import ManagerClient
from warren.errors import InvalidError
from warren.spec.publishing import describe
from warren.spec.taskstate import TERMINAL

# Table mode cuts a task message to this many characters (--no-trunc shows it whole); long enough for
# a pending task's full placement reason.
MESSAGE_WIDTH = 200
# Table mode shows task IDs cut to this many characters (as docker does), --no-trunc whole.
ID_WIDTH = 12
# Update states during which `service list` shows the UPDATE column.
_UPDATE_SHOWN = {"updating": "updating", "paused": "paused", "rollback_started": "rolling back"}

# What "now" is for task ages (tests pin it).
now: Callable[[], float] = time.time


def _spec(service: Mapping[str, Any]) -> Mapping[str, Any]:
    spec = service.get("spec")
    return spec if isinstance(spec, Mapping) else {}


def _replicas(service: Mapping[str, Any]) -> str:
    """"running/desired", e.g. "2/3"; "2/2 (global)" for a global service."""
    spec = _spec(service)
    desired = service.get("replicas_desired")
    if desired is None and spec.get("mode") != "global":
        desired = spec.get("replicas")
    running = service.get("replicas_running")
    text = f"{cell(running)}/{cell(desired)}"
    return f"{text} (global)" if spec.get("mode") == "global" else text


def _update_state(service: Mapping[str, Any]) -> str | None:
    status = service.get("update_status")
    state = status.get("state") if isinstance(status, Mapping) else None
    return _UPDATE_SHOWN.get(state) if isinstance(state, str) else None


def _ports(service: Mapping[str, Any]) -> str | None:
    """The published ports, e.g. "*:8080->80/tcp (ingress), *:53->53/udp (host)"."""
    shown = ", ".join(_published(service))
    return shown or None


def _published(service: Mapping[str, Any]) -> list[str]:
    items = _spec(service).get("publish")
    return [describe(p.get("host"), p.get("container"), p.get("protocol"), p.get("mode"))
            for p in items if isinstance(p, Mapping)] if isinstance(items, list) else []


SERVICE_COLUMNS: list[Column] = [
    ("NAME", lambda s: s.get("name")),
    ("REPLICAS", _replicas),
    ("IMAGE", lambda s: _spec(s).get("image")),
    ("VERSION", lambda s: s.get("version")),
]
UPDATE_COLUMN: Column = ("UPDATE", _update_state)
PORTS_COLUMN: Column = ("PORTS", _ports)

CREATE_EPILOG = """\
examples:
  warren service create web --image nginx:1.27 --replicas 3 --publish 8080:80 --env TZ=UTC
  warren service create dns --image coredns --publish mode=host,published=53,target=53,protocol=udp
  warren service create web --image nginx:1.27 --health-http 80/ --health-interval 2s --memory 256m
  warren service create agent --image alpine --mode global --command "sleep infinity"
  warren service create api --image api:2 --constraint node.labels.zone==eu --update-order start-first
  warren service create tick --driver process --image none --command "sh -c 'date; sleep 5'"
  warren service create api --image api:2 --secret db-password   # file /run/secrets/db-password
"""
UPDATE_EPILOG = """\
examples:
  warren service update web --image nginx:1.28          rolling update, --update-parallelism at a time
  warren service update web --health-retries 5          keeps the current kind of health check
  warren service update web --env TZ=CET --env-rm DEBUG
  warren service update web --replicas 5 --label tier=front   no task is replaced
"""
LOGS_EPILOG = """\
Ctrl-C stops following; the exit status is then 0. A task's output may hold terminal control
sequences: they are shown as escapes (\\x1b) unless --raw, which prints the output as written.

examples:
  warren service logs web --tail 100
  warren service logs web --follow
  warren service logs web --task 3f9a1c2b7d4e --tail 20
  warren service logs web --task web.2 --tail all
  warren service logs web --raw > web.log
"""


def register(service: Subparsers) -> None:
    create = add_command(service, "create", "create a service",
                         "Create a service: an image run as N replicas, or once per node (global).\n"
                         "Durations are written 500ms, 10s, 1m30s.",
                         epilog=CREATE_EPILOG)
    create.add_argument("name", metavar="NAME", help="the service's name (lowercase letters, digits, '-')")
    add_spec_flags(create, update=False)
    add_detach(create)
    create.set_defaults(client_handler=service_create)

    update = add_command(service, "update", "change a service (rolling update)",
                         "Change a service's spec; only what the flags give changes. A change of what tasks\n"
                         "are made of (image, command, env, ports, resources, health, ...) replaces the\n"
                         "tasks a few at a time (see the rolling-update flags); replicas and labels do not.\n"
                         "Durations are written 500ms, 10s, 1m30s.",
                         epilog=UPDATE_EPILOG)
    update.add_argument("name", metavar="NAME", help="the service's name")
    add_spec_flags(update, update=True)
    add_detach(update)
    update.set_defaults(client_handler=service_update)

    rollback = add_command(service, "rollback", "go back to the spec before the last update",
                           "Roll a service back to its spec before the last update (a rolling update).")
    rollback.add_argument("name", metavar="NAME", help="the service's name")
    add_detach(rollback)
    rollback.set_defaults(client_handler=service_rollback)

    scale = add_command(service, "scale", "change the number of replicas",
                        "Set the number of tasks of a replicated service (0 stops them all).")
    scale.add_argument("name", metavar="NAME", help="the service's name")
    scale.add_argument("replicas", type=non_negative_int, metavar="N", help="the new number of replicas")
    add_detach(scale)
    scale.set_defaults(client_handler=service_scale)

    # `ls` as docker and the other groups (config, secret, volume) spell it; `list` as before.
    listing = add_command(service, "ls", "list the services",
                          "List every service: tasks running/desired, image and version; an UPDATE column\n"
                          "appears while a rolling update is in progress or paused.", aliases=("list",))
    listing.set_defaults(client_handler=service_list)

    inspect = add_command(service, "inspect", "show one service in detail",
                          "Show a service's spec, version, timestamps and rolling-update status.")
    inspect.add_argument("name", metavar="NAME", help="the service's name")
    inspect.set_defaults(client_handler=service_inspect)

    ps = add_command(service, "ps", "list a service's tasks",
                     "List a service's tasks: where they run, their state and why (a pending task's\n"
                     "message says why it cannot be placed). By default: the current task of each slot\n"
                     "and the latest finished one before it.")
    ps.add_argument("name", metavar="NAME", help="the service's name")
    ps.add_argument("-a", "--all", action="store_true", help="every task the cluster still keeps (history)")
    ps.add_argument("--no-trunc", action="store_true", help="show whole task IDs and messages")
    ps.set_defaults(client_handler=service_ps)

    logs = add_command(service, "logs", "print a service's output",
                       "Print the output (stdout and stderr) of a service's tasks, or of one task.",
                       epilog=LOGS_EPILOG)
    logs.add_argument("name", metavar="NAME", help="the service's name")
    logs.add_argument("--task", metavar="ID|NAME",
                      help="only this task: its ID or a unique start of it, or its name (web.1: the slot's "
                      "newest task), as 'warren service ps' shows them (default: every running task)")
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing new output until Ctrl-C")
    logs.add_argument("-n", "--tail", type=tail_lines, metavar="N|all",
                      help="start with the last N lines of each task, or all of them (default 100)")
    logs.add_argument("--raw", action="store_true",
                      help="print the output exactly as the tasks wrote it, terminal control sequences "
                      "included (by default every control character but tab and newline is shown as an "
                      "escape such as \\x1b)")
    logs.set_defaults(client_handler=service_logs)

    remove = add_command(service, "rm", "remove a service", "Remove a service and stop its tasks.")
    remove.add_argument("name", metavar="NAME", help="the service's name")
    remove.set_defaults(client_handler=service_rm)


# -- create, update, rollback, scale, rm -------------------------------------------------------------

def add_detach(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-d", "--detach", action="store_true",
                        help="return once the change is made, without waiting for it to converge (by "
                        "default: wait, showing progress on stderr; exit 1 if it fails, 130 on Ctrl-C, "
                        "which stops only the waiting)")


def _settle(args: argparse.Namespace, client: ManagerClient, kind: Kind, service: Mapping[str, Any]) -> int:
    """Print the write's result (stdout), then wait for it unless --detach: the exit status."""
    version, since = service.get("version"), service.get("updated_at")
    if args.detach or not isinstance(version, int) or not isinstance(since, int | float):
        return 0
    name = str(service.get("name") or args.name)
    return waiting.wait(client, Change(kind, name, version, float(since)))


def service_create(args: argparse.Namespace, client: ManagerClient) -> int:
    service = client.create_service(create_body(args))
    print(render(service, args.format, lambda: _created(service)), end="", flush=True)
    return _settle(args, client, "create", service)


def _created(service: Mapping[str, Any]) -> str:
    spec = _spec(service)
    replicas = spec.get("replicas")
    if spec.get("mode") == "global":
        tasks = "one task per node, "
    elif isinstance(replicas, int):
        tasks = plural(replicas, "replica") + ", "
    else:
        tasks = ""
    return f"Service {service.get('name')} created ({tasks}id {service.get('id', '-')})\n"


def service_update(args: argparse.Namespace, client: ManagerClient) -> int:
    current = client.get_service(args.name, consistent=True)
    changes = update_changes(args, _spec(current))
    if not changes:
        text = f"Service {args.name} unchanged (version {current.get('version')}): nothing to change\n"
        print(render(current, args.format, lambda: text), end="")
        return 0
    # If-Match: flags merged over what we read must not overwrite a change made meanwhile.
    version = current.get("version")
    if_match = version if isinstance(version, int) else None
    service = client.update_service(args.name, changes, if_match=if_match)
    head = f"Service {service.get('name', args.name)} updated (version {service.get('version')})"
    if "mode" in changes:
        text = f"{head}; every task is replaced by one of {changes['mode']} mode\n"
    elif specs.rolls_out(changes):
        policy = _spec(service).get("update")
        parallelism = policy.get("parallelism", 1) if isinstance(policy, Mapping) else 1
        text = f"{head}; rolling out new tasks, {parallelism} at a time\n"
    else:
        text = f"{head}; no task changes\n"
    print(render(service, args.format, lambda: text), end="", flush=True)
    return _settle(args, client, "update", service)


def service_rollback(args: argparse.Namespace, client: ManagerClient) -> int:
    service = client.rollback_service(args.name)
    text = f"Service {service.get('name', args.name)} rolled back to its previous spec\n"
    print(render(service, args.format, lambda: text), end="", flush=True)
    return _settle(args, client, "rollback", service)


def service_scale(args: argparse.Namespace, client: ManagerClient) -> int:
    service = client.update_service(args.name, {"replicas": args.replicas})
    replicas = _spec(service).get("replicas")
    count = replicas if isinstance(replicas, int) else args.replicas
    text = f"Service {service.get('name', args.name)} scaled to {plural(count, 'replica')}\n"
    print(render(service, args.format, lambda: text), end="", flush=True)
    return _settle(args, client, "scale", service)


def service_rm(args: argparse.Namespace, client: ManagerClient) -> int:
    answer = client.remove_service(args.name)
    text = f"Service {answer.get('removed', args.name)} removed\n"
    print(render(answer, args.format, lambda: text), end="")
    return 0


# -- list, inspect ----------------------------------------------------------------------------------

def service_list(args: argparse.Namespace, client: ManagerClient) -> int:
    services = client.list_services()
    columns = SERVICE_COLUMNS
    if any(_ports(s) for s in services):
        columns = [*columns, PORTS_COLUMN]
    if any(_update_state(s) for s in services):
        columns = [*columns, UPDATE_COLUMN]
    print(render_list(services, args.format, columns), end="")
    return 0


def service_inspect(args: argparse.Namespace, client: ManagerClient) -> int:
    service = client.get_service(args.name)
    if args.format == "table":
        service.setdefault("update_status", None)  # "no update under way" is worth a line of its own
        spec = service.get("spec")
        if isinstance(spec, dict) and spec.get("publish"):  # each with its mode, as `service ls` shows it
            service["spec"] = {**spec, "publish": _ports(service)}
    print(render_object(service, args.format), end="")
    return 0


# -- ps ---------------------------------------------------------------------------------------------

def service_ps(args: argparse.Namespace, client: ManagerClient) -> int:
    tasks = shown_tasks(client.list_tasks(args.name), show_all=args.all)
    print(render(tasks, args.format, lambda: tasks_table(tasks, truncate=not args.no_trunc)), end="")
    return 0


SlotKey = tuple[str, int, int, str]


def _slot_key(task: Mapping[str, Any]) -> SlotKey:
    """Tasks of one slot (one node, for a global service) group together, slots in order, per service
    (`node ps` lists several)."""
    service = str(task.get("service_name") or task.get("service_id") or "")
    slot = task.get("slot")
    if isinstance(slot, int):
        return (service, 0, slot, "")
    return (service, 1, 0, str(task.get("node") or ""))


def _newest_first(task: Mapping[str, Any]) -> tuple[float, float]:
    created, updated = task.get("created_at"), task.get("updated_at")
    return (-(created if isinstance(created, int | float) else 0.0),
            -(updated if isinstance(updated, int | float) else 0.0))


def _final(task: Mapping[str, Any]) -> bool:
    return task.get("state") in TERMINAL


def shown_tasks(tasks: Iterable[Mapping[str, Any]], *, show_all: bool) -> list[dict[str, Any]]:
    """Per slot: its unfinished tasks, then (all, or only the latest of) its finished ones, newest first."""
    ordered = sorted(tasks, key=lambda t: (_slot_key(t), _final(t), _newest_first(t)))
    shown: list[dict[str, Any]] = []
    seen_final: set[SlotKey] = set()
    for task in ordered:
        if _final(task) and not show_all:
            key = _slot_key(task)
            if key in seen_final:
                continue
            seen_final.add(key)
        shown.append(dict(task))
    return shown


def tasks_table(tasks: Sequence[Mapping[str, Any]], *, truncate: bool = True) -> str:
    rows = []
    previous_slot: SlotKey | None = None
    current = now()
    for task in tasks:
        key = _slot_key(task)
        name = cell(task.get("name"))
        if key == previous_slot:
            name = f" \\_ {name}"  # an older task of the slot above, as `docker service ps` shows it
        previous_slot = key
        task_id = cell(task.get("id"))
        raw = task.get("message")  # a multi-line message reads as one line (and LF is no escape here)
        message = cell(" ".join(str(raw).split()) if isinstance(raw, str) else raw)
        if truncate:
            task_id = task_id[:ID_WIDTH]
            message = shorten(message, MESSAGE_WIDTH)
        else:
            message = " ".join(message.split())
        health = task.get("health")
        rows.append([task_id, name, cell(task.get("node")), cell(task.get("desired_state")),
                     _state(task, current), cell(None if health == "none" else health), message])
    return table(rows, ["ID", "NAME", "NODE", "DESIRED", "STATE", "HEALTH", "MESSAGE"])


def _state(task: Mapping[str, Any], current: float) -> str:
    """"running 12s ago": the state and how long it has held (running: since the task started)."""
    state = cell(task.get("state"))
    since = task.get("started_at") if task.get("state") == "running" else None
    if not isinstance(since, int | float):
        since = task.get("updated_at")
    if not isinstance(since, int | float) or isinstance(since, bool):
        return state
    return f"{state} {age(current - since)} ago"


# -- logs -------------------------------------------------------------------------------------------

def service_logs(args: argparse.Namespace, client: ManagerClient) -> int:
    """The text as it arrives, control characters but TAB and LF escaped unless --raw (a task's output
    is anyone's bytes: an ESC sequence could rewrite the user's terminal); Ctrl-C ends quietly with
    status 0 (following is ended on purpose)."""
    show = (lambda text: text) if args.raw else safe
    task = None if args.task is None else resolve_task(client.list_tasks(args.name), args.task)
    stream = client.service_logs(args.name, task=task, follow=args.follow, tail=args.tail)
    with contextlib.closing(stream):
        try:
            for text in stream:
                sys.stdout.write(show(text))
                sys.stdout.flush()
        except KeyboardInterrupt:
            return 0
    return 0


def resolve_task(tasks: Sequence[Mapping[str, Any]], ref: str) -> str:
    """The ID of the task `ref` names: a whole ID, a unique start of one (as `ps` cuts them), or a task
    name such as web.1 (the newest task of that slot, preferring one that has not finished)."""
    ids = [str(t.get("id")) for t in tasks]
    if ref in ids:
        return ref
    named = [t for t in tasks if t.get("name") == ref]
    if named:
        return str(min(named, key=lambda t: (_final(t), _newest_first(t))).get("id"))
    matches = [i for i in ids if i.startswith(ref)]
    if len(matches) > 1:
        raise InvalidError(f"task {ref!r} is ambiguous: it starts {len(matches)} task IDs; give more of it")
    return matches[0] if matches else ref  # unknown: the manager says so
