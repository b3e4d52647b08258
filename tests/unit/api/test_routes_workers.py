"""The session route passes on whether the worker asked for service endpoints: `known_endpoints` absent
(an older worker: never woken for them nor sent them), null (it has none) or a digest; checked first."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from msgspec import UNSET
from starlette.testclient import TestClient

from warren.api import routes_workers
from warren.api.answers import Session
from warren.api.app import add_error_handlers
from warren.api.responses import JSON

ENDPOINTS = {"digest": "0123456789abcdef", "services": {"web": {"healthy": ["10.0.0.2"], "tasks": [
    {"task_id": "t-1", "slot": 1, "node": "worker-1", "addr": "10.0.0.2", "healthy": True}]}}}


class Workers:
    """The leader's worker protocol, recording what a session call was given."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

        self.statuses: list[tuple[str, list[dict[str, Any]]]] = []

    def authenticate(self, node: str, secret: str) -> None:
        pass

    async def report_status(self, node: str, updates: list[dict[str, Any]]) -> int:
        self.statuses.append((node, updates))
        return len(updates)

    async def session(self, *args: Any) -> dict[str, Any]:
        self.calls.append(args)
        return {"heartbeat_period_s": 5.0, "digest": "d", "assignments": None, "log_requests": [],
                "endpoints": ENDPOINTS}


@pytest.fixture
def client() -> Iterator[tuple[TestClient, Workers]]:
    workers = Workers()
    app = FastAPI(default_response_class=JSON)
    add_error_handlers(app)
    routes_workers.add_routes(app, workers)  # type: ignore[arg-type]
    with TestClient(app) as test_client:
        yield test_client, workers


@pytest.mark.parametrize(("extra", "passed"), [({}, UNSET), ({"known_endpoints": None}, None),
                                               ({"known_endpoints": "0123456789abcdef"}, "0123456789abcdef")])
def test_the_route_says_whether_the_worker_asked(
    client: tuple[TestClient, Workers], extra: dict[str, Any], passed: Any
) -> None:
    http, workers = client
    answer = http.post("/v1/dispatcher/session", json={"node": "worker-1", "known": None, **extra},
                       headers={"Authorization": "Bearer s"})
    assert answer.status_code == 200, answer.text
    assert workers.calls[-1][-1] == passed
    assert Session.model_validate(answer.json()).endpoints is not None  # the answer's model holds it


@pytest.mark.parametrize("bad", ["x" * 129, 12, ["a"]])
def test_a_bad_known_endpoints_is_refused_naming_it(client: tuple[TestClient, Workers], bad: Any) -> None:
    http, workers = client
    answer = http.post("/v1/dispatcher/session", json={"node": "worker-1", "known_endpoints": bad},
                       headers={"Authorization": "Bearer s"})
    assert answer.status_code == 400 and "known_endpoints: " in answer.json()["message"], answer.text
    assert workers.calls == []


def status_body(**extra: Any) -> dict[str, Any]:
    return {"node": "worker-1", "updates": [{"task_id": "t-1", "state": "running", "at": 1.0, **extra}]}


AUTH = {"Authorization": "Bearer s"}


def test_a_status_update_passes_on_its_ports_only_when_it_has_them(
    client: tuple[TestClient, Workers]
) -> None:
    http, workers = client
    for extra in ({"ports": {"8080": 32768, "65535": 1}}, {}):
        answer = http.post("/v1/dispatcher/status", json=status_body(**extra), headers=AUTH)
        assert answer.status_code == 200, answer.text
    (_, [with_ports]), (_, [without]) = workers.statuses
    assert with_ports["ports"] == {"8080": 32768, "65535": 1}
    assert "ports" not in without  # the task keeps its stored ports (and the command needs no newer peers)


@pytest.mark.parametrize(("ports", "said"), [
    ({"0": 80}, "key '0' is not a published port (a decimal number from 1 to 65535)"),
    ({"65536": 80}, "key '65536' is not a published port"),
    ({"+80": 80}, "key '+80' is not a published port"),
    ({"08": 80}, "key '08' is not a published port"),
    ({"80": 0}, "80: the host port must be a number from 1 to 65535"),
    ({"80": 65536}, "80: the host port must be a number from 1 to 65535"),
    ({"80": "32768"}, "ports.80: Input should be a valid integer"),
    ({str(p): p for p in range(1, 66)}, "at most 64"),
    ([80], "ports: Input should be a valid dictionary"),
])
def test_bad_ports_are_refused_with_a_clear_400(
    client: tuple[TestClient, Workers], ports: Any, said: str
) -> None:
    http, workers = client
    answer = http.post("/v1/dispatcher/status", json=status_body(ports=ports), headers=AUTH)
    assert answer.status_code == 400 and said in answer.json()["message"], answer.text
    assert workers.statuses == []
