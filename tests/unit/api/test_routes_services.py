"""The service routes check what they are sent before anything is created (issue 13, section 4): a 400
naming the field, and nothing created or changed."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.testclient import TestClient

from tests.unit.manager.secrets_world import VALUE_B64, World
from warren.store import queries

BASE: dict[str, Any] = {"name": "web", "image": "nginx"}  # the smallest service a request creates


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({**BASE, "image": "../x"}, "image"),
        ({**BASE, "image": "a//b"}, "image"),
        ({**BASE, "image": "UPPER/x"}, "image"),
        ({**BASE, "image": "x:tag:tag"}, "image"),
        ({**BASE, "image": "a" * 300}, "image"),
        ({**BASE, "image": "nginx\n"}, "image"),
        ({**BASE, "command": ["sh", "-c", "echo\x00rm"]}, "command.2"),
        ({**BASE, "env": {"A": "\x1b[2J"}}, "env.A"),
        ({**BASE, "labels": {"k": "v\r\n"}}, "labels.k"),
        ({**BASE, "health": {"kind": "cmd", "cmd": ["x\x07"]}}, "health.cmd.0"),
        ({**BASE, "constraints": ["node.labels.a==b\x1b"]}, "constraints.0"),
        ({**BASE, "name": "web\n"}, "name"),
        ({**BASE, "container": {"user": "root\n"}}, "container.user"),
        ({**BASE, "container": {"cap_add": ["SYS_EVERYTHING"]}}, "container.cap_add.0"),
        ({**BASE, "container": {"sysctls": {"kernel.core_pattern": "|/bin/sh"}}}, "container"),
        ({**BASE, "container": {"devices": [{"host": "/dev/../etc/shadow"}]}}, "container"),
        ({**BASE, "container": {"stop_signal": "SIGCONT"}}, "container.stop_signal"),
        ({**BASE, "container": {"hostname": "x" * 64}}, "container.hostname"),
    ],
)
def test_the_api_answers_400_naming_the_field_and_creates_nothing(
    client: tuple[TestClient, World], body: dict[str, Any], field: str
) -> None:
    http, world = client
    answer = http.post("/v1/services", json=body)
    assert answer.status_code == 400, answer.text
    doc = answer.json()
    assert doc["error"] == "invalid" and f"invalid request: {field}: " in doc["message"], doc
    assert queries.services(world.conn) == []
    assert http.get("/v1/services").json() == []


@pytest.mark.parametrize("name", ["Web", "web_1", "-web", "a" * 64])
def test_a_service_name_that_is_not_a_dns_label_is_refused_saying_so(
    client: tuple[TestClient, World], name: str
) -> None:
    http, world = client
    answer = http.post("/v1/services", json={**BASE, "name": name})
    assert answer.status_code == 400, answer.text
    assert answer.json() == {"error": "invalid", "message": (
        "invalid request: name: a service name is a DNS name (tasks find the service by it): 1 to 63 "
        f"lowercase letters, digits and '-', beginning and ending with a letter or digit (got {name!r})")}
    assert queries.services(world.conn) == []
    assert http.post("/v1/services", json={**BASE, "name": "a" * 63}).status_code == 201


def test_discovery_is_stored_only_while_off(client: tuple[TestClient, World]) -> None:
    http, world = client
    created = http.post("/v1/services", json={**BASE, "discovery": False})
    assert created.status_code == 201, created.text
    assert created.json()["spec"]["discovery"] is False
    assert http.patch("/v1/services/web", json={"discovery": "no"}).status_code == 400
    answer = http.patch("/v1/services/web", json={"discovery": True})
    assert answer.status_code == 200, answer.text
    stored = queries.service(world.conn, "web")
    assert stored is not None and "discovery" not in stored["spec"]


def test_an_update_to_a_bad_image_changes_nothing(client: tuple[TestClient, World]) -> None:
    http, world = client
    assert http.post("/v1/services", json=BASE).status_code == 201
    before = queries.service(world.conn, "web")
    for changes, field in (({"image": "../../etc"}, "image"), ({"command": ["a\x00"]}, "command.0")):
        answer = http.patch("/v1/services/web", json=changes)
        assert answer.status_code == 400 and f"{field}: " in answer.json()["message"], answer.text
    assert queries.service(world.conn, "web") == before
    refused = http.post("/v1/secrets", json={"name": "db\x1b", "data": VALUE_B64})
    assert refused.status_code == 400 and "name: " in refused.json()["message"]
    assert http.get("/v1/secrets").json() == []


def test_container_options_are_stored_and_shown_and_an_empty_part_is_none(
    client: tuple[TestClient, World]
) -> None:
    http, _ = client
    options = {"user": "1000", "read_only": True, "devices": [{"host": "/dev/ttyUSB0"}]}
    assert http.post("/v1/services", json={**BASE, "container": options}).status_code == 201
    spec = http.get("/v1/services/web").json()["spec"]
    assert spec["container"] == options  # only the options set
    assert http.post("/v1/services", json={**BASE, "name": "plain", "container": {}}).status_code == 201
    assert "container" not in http.get("/v1/services/plain").json()["spec"]
    # Every option back to its default is no container part at all.
    answer = http.patch("/v1/services/web", json={"container": {"read_only": False}})
    assert answer.status_code == 200, answer.text
    assert "container" not in answer.json()["spec"]
