"""`warren node list | inspect | drain | activate | rm`: the cluster's managers and workers."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import Any

from warren.cli.output import Column, human_bytes, render, render_list, render_object
from warren.cli.parsing import Subparsers, add_command
from warren.client import ManagerClient


def _address(node: Mapping[str, Any]) -> object:
    """A manager's API address; a worker's address (where its published ports are reached)."""
    if node.get("role") == "worker":
        return node.get("addr") or node.get("api_addr")
    return node.get("api_addr") or node.get("addr")


NODE_COLUMNS: list[Column] = [
    ("NAME", lambda n: n.get("name")),
    ("ROLE", lambda n: n.get("role")),
    ("STATE", lambda n: n.get("state")),
    ("AVAILABILITY", lambda n: n.get("availability")),
    ("ADDRESS", _address),
]


def _resources(node: Mapping[str, Any]) -> Mapping[str, Any]:
    resources = node.get("resources")
    return resources if isinstance(resources, Mapping) else {}


def _cpus(node: Mapping[str, Any]) -> object:
    cpus = _resources(node).get("cpus")
    return f"{cpus:g}" if isinstance(cpus, int | float) and not isinstance(cpus, bool) else cpus


def _memory(node: Mapping[str, Any]) -> object:
    memory = _resources(node).get("memory")
    return human_bytes(memory) if isinstance(memory, int | float) and not isinstance(memory, bool) else memory


# Shown when a node reports what it has (workers, and managers that run tasks).
RESOURCE_COLUMNS: list[Column] = [("CPUS", _cpus), ("MEMORY", _memory)]


def register(node: Subparsers) -> None:
    listing = add_command(node, "list", "list the nodes",
                          "List every node: managers and workers, their state (ready|down), availability\n"
                          "(active|drain) and address; CPUS and MEMORY are what a worker reported.")
    listing.set_defaults(client_handler=node_list)

    inspect = add_command(node, "inspect", "show one node in detail",
                          "Show everything known about a node (labels, resources, addresses, timestamps).")
    inspect.add_argument("name", metavar="NAME", help="the node's name")
    inspect.set_defaults(client_handler=node_inspect)

    drain = add_command(node, "drain", "move a node's tasks elsewhere and place none there",
                        "Drain a node: its tasks are stopped and placed on other nodes, and no new task is\n"
                        "placed on it until 'warren node activate'. For maintenance.")
    drain.add_argument("name", metavar="NAME", help="the node's name")
    drain.set_defaults(client_handler=node_drain)

    activate = add_command(node, "activate", "let a drained node run tasks again",
                           "Make a drained node available again: new tasks may be placed on it.")
    activate.add_argument("name", metavar="NAME", help="the node's name")
    activate.set_defaults(client_handler=node_activate)

    remove = add_command(
        node, "rm", "remove a node from the cluster",
        "Remove a node. A manager first leaves the Raft membership; the leader itself cannot be\n"
        "removed (stop it, which hands leadership over, or remove it once it is a follower).",
    )
    remove.add_argument("name", metavar="NAME", help="the node's name")
    remove.set_defaults(client_handler=node_rm)


def node_list(args: argparse.Namespace, client: ManagerClient) -> int:
    nodes = client.list_nodes()
    columns = NODE_COLUMNS
    if any(_resources(n).get("cpus") is not None or _resources(n).get("memory") is not None for n in nodes):
        columns = [*NODE_COLUMNS, *RESOURCE_COLUMNS]
    print(render_list(nodes, args.format, columns), end="")
    return 0


def node_inspect(args: argparse.Namespace, client: ManagerClient) -> int:
    node = client.get_node(args.name)
    shown: Mapping[str, Any] = node
    memory = _resources(node).get("memory")
    if args.format == "table" and isinstance(memory, int) and not isinstance(memory, bool):
        # Bytes for tools (json/yaml), and a figure a person can read in the table.
        shown = {**node, "resources": {**_resources(node), "memory": f"{memory} ({human_bytes(memory)})"}}
    print(render_object(shown, args.format), end="")
    return 0


def node_drain(args: argparse.Namespace, client: ManagerClient) -> int:
    node = client.set_node_availability(args.name, "drain")
    text = f"Node {node.get('name', args.name)} drained: its tasks move to other nodes\n"
    print(render(node, args.format, lambda: text), end="")
    return 0


def node_activate(args: argparse.Namespace, client: ManagerClient) -> int:
    node = client.set_node_availability(args.name, "active")
    print(render(node, args.format, lambda: f"Node {node.get('name', args.name)} active\n"), end="")
    return 0


def node_rm(args: argparse.Namespace, client: ManagerClient) -> int:
    answer = client.remove_node(args.name)
    print(render(answer, args.format, lambda: f"Node {answer.get('removed', args.name)} removed\n"), end="")
    return 0
