"""The cluster network of a worker's Docker containers: a bridge network per node, made by the worker,
whose gateway (an address of the host) its DNS server listens on, set as the containers' resolver.

This module says what the engine's answers mean and what a runtime that has such a network offers
(`NetworkingRuntime`); the engine calls are docker.py's (only it imports `docker`). A network is the
worker's only if it carries both labels below with this cluster's and this node's values: one of the
same name that is not is left alone (the worker warns and its containers get no resolver).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from warren.errors import WarrenError
from warren.runtime.base import LABEL_VOLUME_NODE

LABEL_NETWORK_CLUSTER = "io.warren.cluster"
LABEL_NETWORK_NODE = LABEL_VOLUME_NODE  # "io.warren.node", as on the node's volumes
NETWORK_DRIVER = "bridge"


class NetworkError(WarrenError):
    """The cluster network cannot be made or used; the message says why, in an operator's words."""


@dataclass(frozen=True, slots=True)
class ClusterNetwork:
    name: str
    id: str
    gateway: str  # the host's IPv4 address on it: where containers find the DNS server (port 53)
    subnet: str


def network_labels(cluster_id: str, node: str) -> dict[str, str]:
    return {LABEL_NETWORK_CLUSTER: cluster_id, LABEL_NETWORK_NODE: node}


def cluster_network(attrs: Mapping[str, Any], *, name: str, cluster_id: str, node: str) -> ClusterNetwork:
    """The network an engine's inspect answer describes, if it is this node's (its name, both labels, a
    bridge with an IPv4 gateway); NetworkError saying why not otherwise."""
    if not isinstance(attrs, Mapping):
        raise NetworkError(f"the Docker Engine described network {name} as {type(attrs).__name__}")
    labels = attrs.get("Labels") or {}
    found = attrs.get("Name")
    if found != name or not isinstance(labels, Mapping) or {
        k: labels.get(k) for k in (LABEL_NETWORK_CLUSTER, LABEL_NETWORK_NODE)
    } != network_labels(cluster_id, node):
        raise NetworkError(
            f"a Docker network named {name} exists and is not this worker's (it lacks the labels "
            f"{LABEL_NETWORK_CLUSTER}={cluster_id}, {LABEL_NETWORK_NODE}={node}); it is left alone: remove "
            "it, or choose another name (worker start --docker-network NAME)"
        )
    if attrs.get("Driver") != NETWORK_DRIVER:
        raise NetworkError(f"Docker network {name} uses driver {attrs.get('Driver')!r}, not {NETWORK_DRIVER}")
    network_id = attrs.get("Id")
    if not isinstance(network_id, str) or not network_id:
        raise NetworkError(f"the Docker Engine gave network {name} no ID")
    ipam = attrs.get("IPAM") or {}
    configs = ipam.get("Config") if isinstance(ipam, Mapping) else None
    for config in configs if isinstance(configs, list) else ():
        gateway = _ipv4_gateway(config)
        if gateway is not None:
            return ClusterNetwork(name, network_id, gateway[0], gateway[1])
    raise NetworkError(f"Docker network {name} has no IPv4 subnet with a gateway")


def _ipv4_gateway(config: Any) -> tuple[str, str] | None:
    """(gateway, subnet) of one IPAM config entry: its Gateway, else the subnet's first address (the one
    Docker gives its bridge); None for an IPv6 or unusable entry."""
    if not isinstance(config, Mapping):
        return None
    try:
        subnet = ipaddress.ip_network(str(config.get("Subnet") or ""), strict=False)
    except ValueError:
        return None
    if subnet.version != 4 or subnet.num_addresses < 4:
        return None
    gateway = config.get("Gateway")
    if not gateway:
        return str(next(subnet.hosts())), str(subnet)
    try:
        address = ipaddress.ip_address(str(gateway).split("/", 1)[0])
    except ValueError:
        return None
    if address not in subnet:
        return None
    return str(address), str(subnet)


@runtime_checkable
class NetworkingRuntime(Protocol):
    """A runtime whose containers can join a cluster network (docker.DockerRuntime)."""

    async def ensure_network(self, name: str) -> ClusterNetwork:
        """The node's network `name`: made if missing (the engine picks the subnet), reused if it is
        this node's; NetworkError if it cannot be made or is not this node's."""
        ...

    def use_network(self, network: ClusterNetwork | None) -> None:
        """Containers started from now on whose spec uses the default network join `network`, with its
        gateway as their DNS server (None: Docker's default bridge, as without one)."""
        ...
