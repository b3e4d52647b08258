"""`warren volume ls | inspect | rm`: the named volumes on the cluster's nodes (docs/volumes.md).

A volume is made by a worker when a task mounting it starts, and stays on that node (a service's
tasks go back to it); these commands show where each is and which services mount it, and remove one
that no service mounts any more.
"""

from __future__ import annotations

import argparse
from typing import Any

from warren.cli.output import Column, render, render_list, render_object
from warren.cli.parsing import Subparsers, add_command
from warren.client import ManagerClient
from warren.config import ClientSettings
from warren.errors import WarrenError

VOLUME_COLUMNS: list[Column] = [
    ("NAME", lambda v: v.get("name")),
    ("NODE", lambda v: v.get("node")),
    ("DRIVER", lambda v: v.get("driver")),
    ("SERVICES", lambda v: ",".join(v.get("services") or []) or None),
    ("NODE STATE", lambda v: v.get("node_state")),
    ("REMOVAL", lambda v: "pending" if v.get("removal_pending") else None),
]

RM_EPILOG = """\
A volume some service's spec mounts cannot be removed: remove the service (its volumes stay), or take
the mount out of its spec, first. The node's worker removes the volume once no task there uses it;
if the node is down, it does so when it is back.

examples:
  warren volume ls
  warren service rm db && warren volume rm data
  warren volume rm data --node worker-3f9a1c      (when several nodes have a volume of that name)
"""


def register(volume: Subparsers) -> None:
    listing_help = ("List the named volumes of every node: where each is, its driver, the services whose\n"
                    "spec mounts it, and whether its removal is pending.")
    listing = add_command(volume, "ls", "list the volumes on every node", listing_help, aliases=("list",))
    listing.set_defaults(client_handler=volume_list)

    inspect = add_command(volume, "inspect", "show a volume: its nodes and the services that mount it",
                          "Show the nodes that hold volume NAME (each with its driver and state) and the\n"
                          "services whose spec mounts it.")
    inspect.add_argument("name", metavar="NAME", help="the volume's name")
    inspect.set_defaults(client_handler=volume_inspect)

    wait_s = ClientSettings().volume_remove_wait_s
    remove = add_command(volume, "rm", "remove a volume no service mounts",
                         "Remove volume NAME from its node, and with it the data it holds. Refused while a\n"
                         f"service's spec mounts it. Waits (up to {wait_s:g} s) until the node's worker has\n"
                         "removed it.",
                         epilog=RM_EPILOG)
    remove.add_argument("name", metavar="NAME", help="the volume's name")
    remove.add_argument("--node", metavar="NODE",
                        help="the node to remove it from (needed when several nodes have a volume of that "
                             "name)")
    remove.set_defaults(client_handler=volume_rm)


def volume_list(args: argparse.Namespace, client: ManagerClient) -> int:
    print(render_list(client.list_volumes(), args.format, VOLUME_COLUMNS), end="")
    return 0


def volume_inspect(args: argparse.Namespace, client: ManagerClient) -> int:
    print(render_object(client.get_volume(args.name), args.format), end="")
    return 0


def volume_rm(args: argparse.Namespace, client: ManagerClient) -> int:
    answer: dict[str, Any] = dict(client.remove_volume(args.name, args.node))
    node = str(answer.get("node") or args.node)
    settings = ClientSettings()
    outcome = str(answer.get("node_state"))  # not ready: its worker removes it when it is back
    if outcome == "ready":
        outcome = client.wait_volume_removed(args.name, node, settings.volume_remove_wait_s,
                                             settings.volume_remove_poll_s)
    answer["status"] = "removed" if outcome == "removed" else "removal requested"
    if outcome == "waiting":
        raise WarrenError(
            f"removal requested, but node {node} has not removed volume {args.name} within "
            f"{settings.volume_remove_wait_s:g} s: it removes it once no task there uses it "
            "('warren volume ls' shows it until then)"
        )
    if outcome == "removed":
        text = f"Volume {args.name} removed from node {node}\n"
    else:
        answer["node_state"] = outcome
        state = "down" if outcome == "down" else f"not ready ({outcome})"
        text = f"removal requested; node {node} is {state}, it removes the volume when it is back\n"
    print(render(answer, args.format, lambda: text), end="")
    return 0
