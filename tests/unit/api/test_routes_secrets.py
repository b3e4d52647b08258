"""The secret routes: a value is taken and never given back, refusals never repeat it, and services may
name only secrets that exist (a secret in use cannot be removed)."""

from __future__ import annotations

import base64

from starlette.testclient import TestClient

from tests.unit.manager.secrets_world import VALUE, VALUE_B64, World
from warren.config import ManagerSettings


def test_the_api_takes_a_value_and_never_gives_it_back(client: tuple[TestClient, World]) -> None:
    http, _ = client
    created = http.post("/v1/secrets", json={"name": "db-password", "data": VALUE_B64})
    assert created.status_code == 201, created.text
    bodies = [created.text]
    assert set(created.json()) == {"id", "name", "created_at", "updated_at", "version", "services"}
    listed = http.get("/v1/secrets")
    assert [s["name"] for s in listed.json()] == ["db-password"]
    bodies.append(listed.text)
    one = http.get("/v1/secrets/db-password")
    assert one.status_code == 200 and one.json()["id"] == created.json()["id"]
    bodies.append(one.text)
    # Refusals say what is wrong without repeating the value.
    for body, status in (
        ({"name": "db-password", "data": VALUE_B64}, 409),
        ({"name": "other", "data": VALUE.decode()}, 400),  # not base64
        ({"name": "Bad_Name", "data": VALUE_B64}, 400),
        ({"name": "other", "data": VALUE_B64, "extra": VALUE.decode()}, 400),
        ({"name": "other", "data": 12345}, 400),
    ):
        answer = http.post("/v1/secrets", json=body)
        assert answer.status_code == status, answer.text
        assert set(answer.json()) == {"error", "message"}
        bodies.append(answer.text)
    big = base64.b64encode(b"x" * (ManagerSettings().max_secret_bytes + 1)).decode()
    too_big = http.post("/v1/secrets", json={"name": "big", "data": big})
    assert too_big.status_code == 400 and "at most" in too_big.json()["message"]
    for text in bodies:
        assert VALUE.decode() not in text and VALUE_B64 not in text
    assert http.get("/v1/secrets/nope").status_code == 404


def test_the_api_refuses_a_service_naming_an_unknown_secret_and_a_removal_in_use(
    client: tuple[TestClient, World],
) -> None:
    http, _ = client
    refused = http.post("/v1/services", json={"name": "web", "image": "busybox", "secrets": ["nope"]})
    assert refused.status_code == 404 and "nope" in refused.json()["message"], refused.text
    twice = http.post("/v1/services", json={"name": "web", "image": "busybox", "secrets": ["a", "a"]})
    assert twice.status_code == 400 and "named twice" in twice.json()["message"], twice.text
    assert http.post("/v1/secrets", json={"name": "key", "data": VALUE_B64}).status_code == 201
    made = http.post("/v1/services", json={"name": "web", "image": "busybox", "secrets": ["key"]})
    assert made.status_code == 201, made.text
    assert made.json()["spec"]["secrets"] == ["key"] and VALUE_B64 not in made.text
    assert http.get("/v1/secrets/key").json()["services"] == ["web"]
    removing = http.delete("/v1/secrets/key")
    assert removing.status_code == 409 and "web" in removing.json()["message"], removing.text
    unknown = http.patch("/v1/services/web", json={"secrets": ["key", "nope"]})
    assert unknown.status_code == 404, unknown.text
    assert http.patch("/v1/services/web", json={"secrets": []}).status_code == 200
    assert http.delete("/v1/secrets/key").json() == {"removed": "key"}
