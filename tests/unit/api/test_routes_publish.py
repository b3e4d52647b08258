"""Published ports through the service routes and the state machine behind them: each new item gets
its mode (ingress unless asked, host for UDP), ingress is TCP only, and an ingress port is the
cluster's: one service publishes it, no task holds it on a node (409 naming the other service)."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.testclient import TestClient

from tests.unit.manager.secrets_world import World
from warren.spec.service import ServiceSpec, decode
from warren.store import commands as c
from warren.store import queries

BASE: dict[str, Any] = {"image": "nginx"}
PROCESS: dict[str, Any] = {"image": "none", "driver": "process", "command": ["serve"]}


def port(published: int, target: int, **more: Any) -> dict[str, Any]:
    return {"host": published, "container": target, **more}


def create(http: TestClient, name: str, *ports: dict[str, Any], **spec: Any) -> Any:
    return http.post("/v1/services", json={"name": name, **BASE, **spec, "publish": list(ports)})


def stored_publish(world: World, name: str) -> Any:
    service = queries.service(world.conn, name)
    assert service is not None
    return service["spec"]["publish"]


def test_each_new_port_is_stored_with_its_mode(client: tuple[TestClient, World]) -> None:
    http, world = client
    answer = create(http, "web", port(8080, 80), port(5353, 53, protocol="udp"), port(9000, 90, mode="host"))
    assert answer.status_code == 201, answer.text
    assert stored_publish(world, "web") == [
        {"host": 8080, "container": 80, "protocol": "tcp", "mode": "ingress"},
        {"host": 5353, "container": 53, "protocol": "udp", "mode": "host"},
        {"host": 9000, "container": 90, "protocol": "tcp", "mode": "host"},
    ]
    patched = http.patch("/v1/services/web", json={"publish": [port(8081, 80)]})
    assert patched.status_code == 200, patched.text
    assert stored_publish(world, "web") == [
        {"host": 8081, "container": 80, "protocol": "tcp", "mode": "ingress"}]


def test_udp_ingress_and_a_process_ingress_on_its_own_target_are_refused(
    client: tuple[TestClient, World]
) -> None:
    http, world = client
    answer = create(http, "dns", port(53, 53, protocol="udp", mode="ingress"))
    assert answer.status_code == 400
    assert "ingress forwards TCP only; publish UDP ports with mode=host" in answer.json()["message"]
    answer = create(http, "proc", port(8080, 8080), **PROCESS)
    assert answer.status_code == 400
    assert "they must differ" in answer.json()["message"]
    assert queries.services(world.conn) == []
    assert create(http, "proc", port(8080, 8080, mode="host"), **PROCESS).status_code == 201
    assert create(http, "proc2", port(8081, 9081), **PROCESS).status_code == 201


def test_an_ingress_port_is_published_by_one_service_only(client: tuple[TestClient, World]) -> None:
    http, world = client
    assert create(http, "web", port(8080, 80)).status_code == 201
    for ports in ([port(8080, 81)], [port(8080, 80, mode="host")]):
        answer = create(http, "other", *ports)
        assert answer.status_code == 409, answer.text
        assert answer.json() == {"error": "conflict",
                                 "message": "port 8080 is published as ingress by service web"}
    # A process task's ingress target is held on its node: not an ingress port of another service.
    answer = create(http, "proc", port(9000, 8080), **PROCESS)
    assert answer.status_code == 409 and "by service web" in answer.json()["message"]
    # UDP 8080 is another port; the same service may go on publishing 8080 (here with a new target).
    assert create(http, "dns", port(8080, 53, protocol="udp")).status_code == 201
    assert http.patch("/v1/services/web", json={"publish": [port(8080, 8000)]}).status_code == 200
    assert [s["name"] for s in queries.services(world.conn)] == ["dns", "web"]


def test_an_ingress_port_held_on_a_node_by_another_service_is_refused(
    client: tuple[TestClient, World]
) -> None:
    http, world = client
    assert create(http, "old", port(8080, 80, mode="host")).status_code == 201
    assert create(http, "proc", port(9000, 9001), **PROCESS).status_code == 201
    for taken, holder, free in ((8080, "old", 7001), (9001, "proc", 7002)):
        answer = create(http, "web", port(taken, 80))
        assert answer.status_code == 409, answer.text
        assert answer.json()["message"] == (
            f"port {taken} is held on its node by a task of service {holder} (host mode, or a process "
            "task's target): it cannot also be an ingress port")
        # An update to the same is refused alike, and changes nothing.
        assert create(http, f"web{taken}", port(free, 80)).status_code == 201
        before = queries.service(world.conn, f"web{taken}")
        answer = http.patch(f"/v1/services/web{taken}", json={"publish": [port(taken, 80)]})
        assert answer.status_code == 409 and f"service {holder}" in answer.json()["message"]
        assert queries.service(world.conn, f"web{taken}") == before


def test_a_service_stored_before_ingress_keeps_host_mode_and_its_port(
    client: tuple[TestClient, World]
) -> None:
    http, world = client
    # Stored by a Warren before ingress: no mode, so host mode; it takes no ingress port.
    old = decode(ServiceSpec, {"image": "nginx", "publish": [port(8080, 80)]})
    world.propose.apply(c.CreateService("svc-old", "old", old, 1.0))
    assert "mode" not in orjson.loads(
        world.conn.execute("SELECT spec FROM services WHERE name = 'old'").fetchone()[0])["publish"][0]
    answer = create(http, "web", port(8080, 80))
    assert answer.status_code == 409 and "service old" in answer.json()["message"]
    # Host beside host is placement's to judge (one task per node), not refused here.
    assert create(http, "web", port(8080, 80, mode="host")).status_code == 201


def test_a_rollback_that_would_take_an_ingress_port_is_refused(client: tuple[TestClient, World]) -> None:
    http, world = client
    assert create(http, "web", port(8080, 80)).status_code == 201
    assert http.patch("/v1/services/web", json={"publish": [port(8081, 80)]}).status_code == 200
    assert create(http, "api", port(8080, 80)).status_code == 201  # 8080 is free again
    answer = http.post("/v1/services/web/rollback")
    assert answer.status_code == 409, answer.text
    assert answer.json()["message"] == "port 8080 is published as ingress by service api"
    assert stored_publish(world, "web")[0]["host"] == 8081
