"""The cluster network of a worker's Docker containers, without an engine: what an inspect answer
means (this node's network or not, its gateway) and what a container on it is created with."""

from __future__ import annotations

from typing import Any

import docker
import pytest

from warren.runtime.base import TaskRun
from warren.runtime.docker import DockerRuntime
from warren.runtime.network import ClusterNetwork, NetworkError, cluster_network
from warren.spec.container import ContainerOptions

LABELS = {"io.warren.cluster": "c1", "io.warren.node": "worker-1", "other": "x"}


def inspected(**changes: Any) -> dict[str, Any]:
    attrs: dict[str, Any] = {
        "Name": "warren-worker-1", "Id": "abc123", "Driver": "bridge", "Labels": LABELS,
        "IPAM": {"Driver": "default", "Config": [
            {"Subnet": "fd00:1::/64", "Gateway": "fd00:1::1"},
            {"Subnet": "172.20.0.0/16", "Gateway": "172.20.0.1"},
        ]},
    }
    attrs.update(changes)
    return attrs


def read(attrs: Any) -> ClusterNetwork:
    return cluster_network(attrs, name="warren-worker-1", cluster_id="c1", node="worker-1")


def test_this_nodes_network_gives_its_ipv4_gateway() -> None:
    assert read(inspected()) == ClusterNetwork("warren-worker-1", "abc123", "172.20.0.1", "172.20.0.0/16")


def test_without_a_gateway_the_subnets_first_address_is_the_bridges() -> None:
    attrs = inspected(IPAM={"Config": [{"Subnet": "10.7.0.0/24"}]})
    assert read(attrs).gateway == "10.7.0.1"


@pytest.mark.parametrize(
    ("attrs", "message"),
    [
        (inspected(Labels={}), "exists and is not this worker's"),
        (inspected(Labels=None), "exists and is not this worker's"),
        (inspected(Labels={**LABELS, "io.warren.cluster": "c2"}), "is not this worker's"),
        (inspected(Labels={**LABELS, "io.warren.node": "worker-2"}), "is not this worker's"),
        (inspected(Name="warren-worker-10"), "is not this worker's"),  # the engine matched something else
        (inspected(Driver="macvlan"), "uses driver 'macvlan', not bridge"),
        (inspected(Id=""), "no ID"),
        (inspected(IPAM={"Config": [{"Subnet": "fd00:1::/64", "Gateway": "fd00:1::1"}]}), "no IPv4 subnet"),
        (inspected(IPAM={"Config": [{"Subnet": "10.0.0.0/24", "Gateway": "10.9.0.1"}]}), "no IPv4 subnet"),
        (inspected(IPAM={"Config": [{"Subnet": "not a subnet"}]}), "no IPv4 subnet"),
        (inspected(IPAM={"Config": "x"}), "no IPv4 subnet"),
        (inspected(IPAM=None), "no IPv4 subnet"),
        ([], "described network warren-worker-1 as list"),
    ],
)
def test_any_other_network_is_refused_saying_why(attrs: Any, message: str) -> None:
    with pytest.raises(NetworkError, match=message):
        read(attrs)


class Captured:
    def __init__(self) -> None:
        self.kwargs: dict[str, Any] = {}


def created_with(network: ClusterNetwork | None, options: ContainerOptions) -> dict[str, Any]:
    """The host config DockerRuntime._create gives the engine (the SDK's own, no engine called)."""
    client = docker.DockerClient(base_url="unix:///nonexistent.sock", version="1.41")
    captured = Captured()

    def create_container(image: str, **kwargs: Any) -> dict[str, str]:
        captured.kwargs = kwargs
        return {"Id": "c1"}

    client.api.create_container = create_container
    runtime = DockerRuntime("c1", "worker-1", client)
    runtime.use_network(network)
    run = TaskRun("t1", "s1", "web", 1, "img", None, {}, options=options)
    assert runtime._create(client, run, "warren-web.1.t1") == "c1"
    host_config: dict[str, Any] = captured.kwargs["host_config"]
    return host_config


NET = ClusterNetwork("warren-worker-1", "abc", "172.20.0.1", "172.20.0.0/16")


def test_a_container_on_the_default_network_joins_the_cluster_network_with_its_gateway_as_dns() -> None:
    host_config = created_with(NET, ContainerOptions())
    assert host_config["NetworkMode"] == "warren-worker-1"
    assert host_config["Dns"] == ["172.20.0.1"]


def test_host_network_and_no_cluster_network_are_as_before() -> None:
    host = created_with(NET, ContainerOptions(network="host"))
    assert host["NetworkMode"] == "host" and "Dns" not in host
    plain = created_with(None, ContainerOptions())
    assert "Dns" not in plain and plain.get("NetworkMode") in (None, "default")
