"""Bad input on a real manager's API: every refusal is a 4xx with `{"error", "message"}`, never a 500."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.integration.managers import ManagerProc, api, assert_error_body

MIB = 1024 * 1024


@pytest.fixture
def client(lone_manager: ManagerProc) -> Iterator[httpx.Client]:
    with api(lone_manager.api_addr, timeout=10) as c:
        yield c


def post_raw(client: httpx.Client, path: str, content: bytes) -> httpx.Response:
    return client.post(path, content=content, headers={"content-type": "application/json"})


@pytest.mark.parametrize(
    "content",
    [
        b'{"name": "web", "image": ',  # truncated
        b"{'name': 'web'}",  # not JSON
        b"\xff\xfe{}",  # not UTF-8
        b"[1, 2, 3]",  # not an object
        b'"web"',
        b"null",
        b"",
        b"[" * 100_000 + b"]" * 100_000,  # deeply nested
        b'{"name": "web", "image": "nginx", "replicas": NaN}',
    ],
    ids=["truncated", "single-quotes", "not-utf8", "array", "string", "null", "empty", "nested", "nan"],
)
def test_malformed_bodies_are_400(client: httpx.Client, content: bytes) -> None:
    assert_error_body(post_raw(client, "/v1/services", content), 400, "invalid")


@pytest.mark.parametrize(
    "body",
    [
        {"name": "web", "image": "nginx", "replicas": "three"},
        {"name": "web", "image": "nginx", "replicas": 1.5},
        {"name": "web", "image": "nginx", "replicas": True},
        {"name": "web", "image": "nginx", "replicas": -1},
        {"name": "web", "image": "nginx", "replicas": 10**30},
        {"name": 5, "image": "nginx"},
        {"name": "web", "image": ["nginx"]},
        {"name": "web", "image": ""},
        {"name": "web", "image": "nginx", "command": "sleep 1"},
        {"name": "web", "image": "nginx", "env": {"1BAD": "x"}},
        {"name": "web", "image": "nginx", "env": {"K": 1}},
        {"name": "web", "image": "nginx", "mode": "everywhere"},
        {"name": "web"},
        {"image": "nginx"},
        {"name": "web", "image": "nginx", "bogus": 1},  # unknown field
        {"name": "web", "image": "nginx", "spec": {}},
    ],
)
def test_wrong_types_and_unknown_fields_are_400(client: httpx.Client, body: dict[str, Any]) -> None:
    assert_error_body(client.post("/v1/services", json=body), 400, "invalid")


@pytest.mark.parametrize(
    "name", ["Web", "-web", "web-", "web_1", "web.1", "", " web", "a" * 64, "wéb", "web/1"]
)
def test_bad_service_names_are_400(client: httpx.Client, name: str) -> None:
    assert_error_body(client.post("/v1/services", json={"name": name, "image": "nginx"}), 400, "invalid")


def test_oversized_body_is_413(client: httpx.Client) -> None:
    big = {"name": "big", "image": "nginx", "env": {"K": "x" * (MIB + 10)}}
    assert_error_body(client.post("/v1/services", json=big), 413, "too_large")
    # Just under the limit is read (and refused for its content, not its size).
    near = {"name": "near", "image": "nginx", "labels": {"k": "x" * (MIB - 200)}}
    assert_error_body(client.post("/v1/services", json=near), 400, "invalid")


def test_paths_methods_and_headers(client: httpx.Client) -> None:
    assert client.post("/v1/services", json={"name": "web", "image": "nginx"}).status_code == 201
    assert_error_body(client.post("/v1/services", json={"name": "web", "image": "nginx"}), 409, "conflict")
    assert_error_body(client.get("/v1/services/Bad_Name"), 400, "invalid")
    assert_error_body(client.get("/v1/services/nothing-here"), 404, "not_found")
    assert_error_body(client.get("/v1/no-such-route"), 404, "not_found")
    assert_error_body(client.get("/v1/nodes/nobody"), 404, "not_found")
    assert_error_body(client.put("/v1/services/web", json={}), 405)
    assert_error_body(client.patch("/v1/services/web", json={}), 400, "invalid")
    assert_error_body(client.patch("/v1/services/web", json={"replicas": -2}), 400, "invalid")
    assert_error_body(client.patch("/v1/services/web", json={"name": "other"}), 400, "invalid")
    assert_error_body(
        client.patch("/v1/services/web", json={"replicas": 2}, headers={"If-Match": "abc"}), 400, "invalid"
    )
    version = client.get("/v1/services/web").json()["version"]
    assert_error_body(
        client.patch("/v1/services/web", json={"replicas": 2}, headers={"If-Match": str(version + 1000)}),
        409,
        "conflict",
    )
    assert (
        client.patch("/v1/services/web", json={"replicas": 2}, headers={"If-Match": str(version)}).status_code
        == 200
    )
    assert_error_body(client.delete("/v1/services/nothing-here"), 404, "not_found")
    assert_error_body(client.get("/v1/services", params={"consistent": "maybe"}), 400, "invalid")


@pytest.mark.parametrize(
    "body",
    [
        {"role": "admin"},
        {"role": "manager", "ttl_s": 0},
        {"role": "manager", "ttl_s": -5},
        {"role": "manager", "ttl_s": 10**12},
        {"role": "manager", "ttl_s": "1h"},
        {"role": "manager", "rotate": "yes"},
        {"role": "manager", "extra": True},
        {},
    ],
)
def test_bad_join_token_requests_are_400(client: httpx.Client, body: dict[str, Any]) -> None:
    assert_error_body(client.post("/v1/cluster/join-tokens", json=body), 400, "invalid")


@pytest.mark.parametrize(
    "body",
    [
        {"token": "x", "api_addr": "not-an-address", "raft_addr": "127.0.0.1:2"},
        {"token": "x", "api_addr": "127.0.0.1:99999", "raft_addr": "127.0.0.1:2"},
        {"token": "", "api_addr": "127.0.0.1:1", "raft_addr": "127.0.0.1:2"},
        {"token": "x" * 1000, "api_addr": "127.0.0.1:1", "raft_addr": "127.0.0.1:2"},
        {"token": "x", "api_addr": "127.0.0.1:1"},
    ],
)
def test_bad_manager_join_requests_are_4xx(client: httpx.Client, body: dict[str, Any]) -> None:
    assert_error_body(client.post("/v1/managers/join", json=body), (400, 401))


def test_manager_is_still_healthy(lone_manager: ManagerProc, client: httpx.Client) -> None:
    """Everything above left the manager serving, and it logged no internal error."""
    assert client.get("/v1/ready").status_code == 200
    assert lone_manager.alive
    errors = lone_manager.errors()
    assert " ERROR " not in errors and "Traceback" not in errors, lone_manager.log_tail()
