"""`warren service create | list | inspect | scale | rm`: what the cluster runs."""

from __future__ import annotations

import argparse
import shlex
from collections.abc import Mapping
from typing import Any

from warren.cli.client import ManagerClient
from warren.cli.output import Column, plural, render, render_list, render_object
from warren.cli.parsing import Subparsers, UsageError, add_command, key_value, non_negative_int


def _spec(service: Mapping[str, Any]) -> Mapping[str, Any]:
    spec = service.get("spec")
    return spec if isinstance(spec, Mapping) else {}


def _replicas(service: Mapping[str, Any]) -> object:
    spec = _spec(service)
    return None if spec.get("mode") == "global" else spec.get("replicas")


SERVICE_COLUMNS: list[Column] = [
    ("NAME", lambda s: s.get("name")),
    ("MODE", lambda s: _spec(s).get("mode")),
    ("REPLICAS", _replicas),
    ("IMAGE", lambda s: _spec(s).get("image")),
    ("VERSION", lambda s: s.get("version")),
]

CREATE_EPILOG = """\
examples:
  warren service create web --image nginx:1.27 --replicas 3 --env TZ=UTC --label tier=front
  warren service create agent --image alpine --mode global --command "sleep infinity"
"""


def register(service: Subparsers) -> None:
    create = add_command(service, "create", "create a service",
                         "Create a service: a container image run as N replicas, or once per node (global).",
                         epilog=CREATE_EPILOG)
    create.add_argument("name", metavar="NAME", help="the service's name (lowercase letters, digits, '-')")
    create.add_argument("--image", required=True, help="the container image, e.g. nginx:1.27")
    create.add_argument("--command", metavar="CMD",
                        help="command to run instead of the image's default, split like a shell would")
    create.add_argument("--replicas", type=non_negative_int, metavar="N",
                        help="number of tasks of a replicated service (default 1)")
    create.add_argument("--mode", choices=("replicated", "global"),
                        help="replicated: N tasks anywhere (default); global: one task on every node")
    create.add_argument("--env", type=key_value, action="append", metavar="K=V",
                        help="environment variable of the containers (repeatable)")
    create.add_argument("--label", type=key_value, action="append", metavar="K=V",
                        help="label of the service (repeatable)")
    create.set_defaults(client_handler=service_create)

    listing = add_command(service, "list", "list the services", "List every service.")
    listing.set_defaults(client_handler=service_list)

    inspect = add_command(service, "inspect", "show one service in detail",
                          "Show a service's spec, version and timestamps.")
    inspect.add_argument("name", metavar="NAME", help="the service's name")
    inspect.set_defaults(client_handler=service_inspect)

    scale = add_command(service, "scale", "change the number of replicas",
                        "Set the number of tasks of a replicated service (0 stops them all).")
    scale.add_argument("name", metavar="NAME", help="the service's name")
    scale.add_argument("replicas", type=non_negative_int, metavar="N", help="the new number of replicas")
    scale.set_defaults(client_handler=service_scale)

    remove = add_command(service, "rm", "remove a service", "Remove a service and stop its tasks.")
    remove.add_argument("name", metavar="NAME", help="the service's name")
    remove.set_defaults(client_handler=service_rm)


def build_spec(args: argparse.Namespace) -> dict[str, Any]:
    """The POST /v1/services body; fields not given are left to the manager's defaults."""
    spec: dict[str, Any] = {"name": args.name, "image": args.image}
    if args.command is not None:
        try:
            command = shlex.split(args.command)
        except ValueError as exc:
            raise UsageError(f"argument --command: {exc} (see 'warren service create --help')") from exc
        if not command:
            raise UsageError("argument --command: empty command (see 'warren service create --help')")
        spec["command"] = command
    if args.mode == "global" and args.replicas is not None:
        raise UsageError("--replicas does not apply to --mode global (see 'warren service create --help')")
    if args.replicas is not None:
        spec["replicas"] = args.replicas
    if args.mode is not None:
        spec["mode"] = args.mode
    if args.env:
        spec["env"] = dict(args.env)
    if args.label:
        spec["labels"] = dict(args.label)
    return spec


def service_create(args: argparse.Namespace, client: ManagerClient) -> int:
    service = client.create_service(build_spec(args))
    print(render(service, args.format, lambda: _created(service)), end="")
    return 0


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


def service_list(args: argparse.Namespace, client: ManagerClient) -> int:
    print(render_list(client.list_services(), args.format, SERVICE_COLUMNS), end="")
    return 0


def service_inspect(args: argparse.Namespace, client: ManagerClient) -> int:
    print(render_object(client.get_service(args.name), args.format), end="")
    return 0


def service_scale(args: argparse.Namespace, client: ManagerClient) -> int:
    service = client.update_service(args.name, {"replicas": args.replicas})
    replicas = _spec(service).get("replicas")
    count = replicas if isinstance(replicas, int) else args.replicas
    text = f"Service {service.get('name', args.name)} scaled to {plural(count, 'replica')}\n"
    print(render(service, args.format, lambda: text), end="")
    return 0


def service_rm(args: argparse.Namespace, client: ManagerClient) -> int:
    answer = client.remove_service(args.name)
    text = f"Service {answer.get('removed', args.name)} removed\n"
    print(render(answer, args.format, lambda: text), end="")
    return 0
