"""`warren node ls | inspect | ps | update | drain | activate | rm`: the cluster's managers and workers."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import Any

from warren.cli.output import Column, human_bytes, render, render_list, render_object
from warren.cli.parsing import Subparsers, UsageError, add_command, key_value
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
    listing = add_command(node, "ls", "list the nodes",
                          "List every node: managers and workers, their state (ready|down), availability\n"
                          "(active|drain) and address; CPUS and MEMORY are what a worker reported.",
                          aliases=("list",))
    listing.set_defaults(client_handler=node_list)

    inspect = add_command(node, "inspect", "show one node in detail",
                          "Show everything known about a node (labels, resources, addresses, timestamps).")
    inspect.add_argument("name", metavar="NAME", help="the node's name")
    inspect.set_defaults(client_handler=node_inspect)

    ps = add_command(node, "ps", "list the tasks on a node",
                     "List the tasks placed on a node, of every service: their state and why (as\n"
                     "'warren service ps' shows them). By default: the current task of each slot and\n"
                     "the latest finished one before it.")
    ps.add_argument("name", metavar="NAME", help="the node's name")
    ps.add_argument("-a", "--all", action="store_true", help="every task the cluster still keeps (history)")
    ps.add_argument("--no-trunc", action="store_true", help="show whole task IDs and messages")
    ps.set_defaults(client_handler=node_ps)

    update = add_command(
        node, "update", "set or remove a node's labels",
        "Set or remove an operator's labels on a node. Placement constraints (node.labels.K==V)\n"
        "see them together with the labels the node's worker reports (worker start --label),\n"
        "an operator's label winning over a reported one of the same key; a worker that\n"
        "registers again keeps the operator's labels. --label-rm removes an operator's label\n"
        "only (a reported one is the worker's to drop).",
        epilog="examples:\n  warren node update --label-add zone=eu --label-add disk=ssd worker-1\n"
               "  warren node update --label-rm disk worker-1\n",
    )
    update.add_argument("name", metavar="NAME", help="the node's name")
    update.add_argument("--label-add", type=key_value, action="append", default=[], metavar="K=V",
                        help="set label K to V (repeatable)")
    update.add_argument("--label-rm", action="append", default=[], metavar="K",
                        help="remove the operator's label K (repeatable)")
    update.set_defaults(client_handler=node_update)

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


def node_ps(args: argparse.Namespace, client: ManagerClient) -> int:
    from warren.cli.service_cmds import shown_tasks, tasks_table

    client.get_node(args.name)  # an unknown node is an error, not an empty list
    tasks = shown_tasks(client.list_node_tasks(args.name), show_all=args.all)
    print(render(tasks, args.format, lambda: tasks_table(tasks, truncate=not args.no_trunc)), end="")
    return 0


def node_update(args: argparse.Namespace, client: ManagerClient) -> int:
    if not args.label_add and not args.label_rm:
        raise UsageError("nothing to change: give --label-add K=V or --label-rm K "
                         "(see 'warren node update --help')")
    added = dict(args.label_add)
    both = sorted(set(added) & set(args.label_rm))
    if both:
        raise UsageError(f"label {both[0]!r} is both added and removed (see 'warren node update --help')")
    node = client.set_node_labels(args.name, added, list(dict.fromkeys(args.label_rm)))
    labels = node.get("labels")
    shown = ", ".join(f"{k}={v}" for k, v in sorted(labels.items())) if isinstance(labels, dict) else ""
    text = f"Node {node.get('name', args.name)} updated; labels: {shown or 'none'}\n"
    print(render(node, args.format, lambda: text), end="")
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
