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

    def authenticate(self, node: str, secret: str) -> None:
        pass

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
