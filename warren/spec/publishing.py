"""Published ports as the cluster sees them: a mode's default, the ports a task holds on its node, and
the cluster-wide rule of ingress ports (docs/networking.md, "Publishing ports: ingress and host mode").

Pure functions of the spec's `Publish` parts: the scheduler's placement, the store's checks and the
CLI read the same rules here.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from warren.spec.service import DEFAULT_PUBLISH_MODE, Publish, PublishMode

NodePort = tuple[int, str]  # (port, protocol) held on a node


def default_mode(protocol: str) -> PublishMode:
    """The mode of a published port whose input names none: ingress, but host for UDP (the ingress
    forwards TCP only, so a UDP port without a mode keeps working as it did rather than being refused)."""
    return "host" if protocol == "udp" else DEFAULT_PUBLISH_MODE


def node_ports(driver: str, publish: Iterable[Publish]) -> tuple[NodePort, ...]:
    """The ports a task of `driver` holds on the node it runs on, so that two cannot share a node:
    a host-mode publish its published port; an ingress publish of a process task its target port (the
    process binds it on the node's network itself); an ingress publish of a Docker task nothing (Docker
    maps the target on an ephemeral host port, so any number of replicas fit on one node)."""
    ports: list[NodePort] = []
    for p in publish:
        if not p.ingress:
            ports.append((p.host, p.protocol))
        elif driver == "process":
            ports.append((p.container, "tcp"))
    return tuple(ports)


def ingress_conflict(
    name: str, driver: str, publish: Sequence[Publish],
    others: Iterable[tuple[str, str, Sequence[Publish]]],
) -> str | None:
    """Why service `name` (of `driver`, publishing `publish`) cannot publish so beside `others`
    ((service, driver, publish) of every other service), or None if it can.

    An ingress port is the cluster's: every worker listens on it. So it is published by one service
    only, and no task may hold it on a node: neither a host-mode publish nor a process task's ingress
    target (which that process binds on its node). The same holds within one service (a process
    service's target equal to one of its own ingress ports)."""
    mine_ingress = {p.host for p in publish if p.ingress}
    mine_held = _held_tcp(driver, publish)
    if port := _first(mine_ingress & mine_held):
        return (f"port {port} is published as ingress by service {name} itself, so no task of it may "
                "hold it on its node")
    for other, other_driver, other_publish in others:
        if other == name:
            continue
        theirs_ingress = {p.host for p in other_publish if p.ingress}
        if port := _first((mine_ingress | mine_held) & theirs_ingress):
            return f"port {port} is published as ingress by service {other}"
        if port := _first(mine_ingress & _held_tcp(other_driver, other_publish)):
            return (f"port {port} is held on its node by a task of service {other} (host mode, or a "
                    "process task's target): it cannot also be an ingress port")
    return None


def _held_tcp(driver: str, publish: Iterable[Publish]) -> set[int]:
    return {port for port, proto in node_ports(driver, publish) if proto == "tcp"}


def _first(ports: set[int]) -> int | None:
    return min(ports) if ports else None


def describe(host: object, container: object, protocol: object, mode: object) -> str:
    """One published port as `service ls|inspect` show it: `*:8080->80/tcp (ingress)`; a stored item
    without a mode is host mode."""
    shown = mode if mode in ("ingress", "host") else "host"
    return f"*:{host}->{container}/{protocol or 'tcp'} ({shown})"
