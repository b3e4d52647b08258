"""`warren node list | inspect | rm`: the cluster's managers and workers."""

from __future__ import annotations

import argparse

from warren.cli.client import ManagerClient
from warren.cli.output import Column, render, render_list, render_object
from warren.cli.parsing import Subparsers, add_command

NODE_COLUMNS: list[Column] = [
    ("NAME", lambda n: n.get("name")),
    ("ROLE", lambda n: n.get("role")),
    ("STATE", lambda n: n.get("state")),
    ("AVAILABILITY", lambda n: n.get("availability")),
    ("ADDRESS", lambda n: n.get("api_addr") or n.get("addr")),
]


def register(node: Subparsers) -> None:
    listing = add_command(node, "list", "list the nodes", "List every node (managers and workers).")
    listing.set_defaults(client_handler=node_list)

    inspect = add_command(node, "inspect", "show one node in detail", "Show everything known about a node.")
    inspect.add_argument("name", metavar="NAME", help="the node's name")
    inspect.set_defaults(client_handler=node_inspect)

    remove = add_command(
        node, "rm", "remove a node from the cluster",
        "Remove a node. A manager first leaves the Raft membership; the leader itself cannot be\n"
        "removed (stop it, which hands leadership over, or remove it once it is a follower).",
    )
    remove.add_argument("name", metavar="NAME", help="the node's name")
    remove.set_defaults(client_handler=node_rm)


def node_list(args: argparse.Namespace, client: ManagerClient) -> int:
    print(render_list(client.list_nodes(), args.format, NODE_COLUMNS), end="")
    return 0


def node_inspect(args: argparse.Namespace, client: ManagerClient) -> int:
    print(render_object(client.get_node(args.name), args.format), end="")
    return 0


def node_rm(args: argparse.Namespace, client: ManagerClient) -> int:
    answer = client.remove_node(args.name)
    print(render(answer, args.format, lambda: f"Node {answer.get('removed', args.name)} removed\n"), end="")
    return 0
