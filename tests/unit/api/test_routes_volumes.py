"""The volume routes over a manager's state in one process: listing with the services that mount each
name, inspect (404 when no node has it), and removal (202; 409 while a spec mounts it; the node must be
named when several have it). Also the bounds of a worker's reported inventory."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pydantic
import pytest
from fastapi import Depends, FastAPI
from starlette.testclient import TestClient

from tests.unit.manager.secrets_world import SPEC, T0, World
from warren.api import models, routes_volumes
from warren.api.app import add_error_handlers
from warren.api.responses import JSON
from warren.manager.control.volumes import Volumes
from warren.spec.mounts import MAX_NODE_VOLUMES
from warren.spec.service import ServiceSpec, decode
from warren.store import commands as c


@pytest.fixture
def http(tmp_path: Path) -> Iterator[tuple[TestClient, World]]:
    world = World(tmp_path)
    world.propose.apply(c.CreateToken("tok", "worker", "ab" * 32, T0, T0 + 1e6, False))
    for name in ("w1", "w2"):
        world.propose.apply(c.RegisterWorker(name, "ab" * 32, "cd" * 32, "127.0.0.9", {}, {}, T0))
    app = FastAPI(default_response_class=JSON)
    add_error_handlers(app)
    consensus: Any = SimpleNamespace(store=world.store, propose=world.propose)
    routes_volumes.add_routes(app, Volumes(consensus), Depends(lambda: None))
    with TestClient(app) as client:
        yield client, world


def holds(world: World, node: str, *names: str) -> None:
    world.propose.apply(c.NodeVolumes(node, [c.VolumeRecord(n, "docker") for n in names], T0))


def mounts(world: World, service: str, volume: str) -> None:
    spec = decode(ServiceSpec, {**SPEC, "mounts": [{"type": "volume", "source": volume, "target": "/v"}]})
    world.propose.apply(c.CreateService(f"svc-{service}", service, spec, T0))


def test_the_list_shows_every_nodes_volumes_with_their_services(http: tuple[TestClient, World]) -> None:
    client, world = http
    assert client.get("/v1/volumes").json() == []
    holds(world, "w1", "data", "logs")
    holds(world, "w2", "data")
    mounts(world, "db", "data")
    listed = client.get("/v1/volumes").json()
    assert [(v["name"], v["node"], v["services"], v["removal_pending"]) for v in listed] == [
        ("data", "w1", ["db"], False), ("data", "w2", ["db"], False), ("logs", "w1", [], False)]
    assert listed[0]["driver"] == "docker" and listed[0]["node_state"] == "ready"
    one = client.get("/v1/volumes/data").json()
    assert one["name"] == "data" and one["services"] == ["db"]
    assert [n["node"] for n in one["nodes"]] == ["w1", "w2"]
    missing = client.get("/v1/volumes/nope")
    assert missing.status_code == 404 and "no node has a volume named 'nope'" in missing.json()["message"]
    assert client.get("/v1/volumes/Bad_Name").status_code == 400


def test_removal_is_refused_in_use_and_needs_the_node_when_several_have_it(
    http: tuple[TestClient, World],
) -> None:
    client, world = http
    holds(world, "w1", "data", "logs")
    holds(world, "w2", "data")
    mounts(world, "db", "data")
    in_use = client.delete("/v1/volumes/data?node=w1")
    assert in_use.status_code == 409 and "in use by service db" in in_use.json()["message"]
    world.propose.apply(c.RemoveService("db", T0))
    which = client.delete("/v1/volumes/data")
    assert which.status_code == 400 and "on nodes w1, w2" in which.json()["message"], which.text
    assert client.delete("/v1/volumes/data?node=w9").status_code == 404
    assert client.delete("/v1/volumes/data?node=Bad_Node").status_code == 400
    done = client.delete("/v1/volumes/data?node=w2")
    assert done.status_code == 202, done.text
    assert done.json() == {"node": "w2", "name": "data", "status": "removal requested", "node_state": "ready"}
    # One node has it: no need to name it; a down node is said so.
    world.propose.apply(c.SetNodeState("w1", "down", T0))
    alone = client.delete("/v1/volumes/logs")
    assert alone.status_code == 202 and alone.json()["node"] == "w1" and alone.json()["node_state"] == "down"
    pending = {(v["name"], v["node"]): v["removal_pending"] for v in client.get("/v1/volumes").json()}
    assert pending == {("data", "w1"): False, ("data", "w2"): True, ("logs", "w1"): True}


def test_a_workers_reported_inventory_is_checked_and_bounded() -> None:
    def request(volumes: object) -> models.SessionRequest:
        return models.SessionRequest.model_validate({"node": "w1", "volumes": volumes})

    assert request([{"name": "data", "driver": "process"}]).volumes == [
        models.NodeVolume(name="data", driver="process")]
    assert request(None).volumes is None
    for bad in ([{"name": "../x", "driver": "docker"}], [{"name": "data", "driver": "zfs"}],
                [{"name": "data"}], [{"name": "data", "driver": "docker", "path": "/x"}],
                [{"name": "data", "driver": "docker"}, {"name": "data", "driver": "docker"}],
                [{"name": f"v{i}", "driver": "docker"} for i in range(MAX_NODE_VOLUMES + 1)]):
        with pytest.raises(pydantic.ValidationError):
            request(bad)
