"""Unexpected exceptions in the API (issue 13 §4): a 500 with the JSON error body and a request id,
and a log record with the same id and the traceback; never Starlette's plain-text 500."""

from __future__ import annotations

import logging
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from warren.api import auth
from warren.api.app import create_app
from warren.api.forwarder import Forwarder
from warren.config import ManagerSettings


class Boom(RuntimeError):
    pass


def _api(cluster: Any) -> Any:
    """The real API stack (create_app) over stand-in service objects, called as the local administrator."""
    control: Any = SimpleNamespace(
        cluster=cluster,
        membership=None,
        nodes=SimpleNamespace(role_of=lambda _: None, catch_up=_caught_up),
        services=None,
        secrets=None,
        configs=None,
        volumes=None,
        backups=None,
        logs=None,
        workers=None,
        events=None,
    )
    app = create_app(control, ManagerSettings(), Forwarder(1.0, None))

    async def on_unix_socket(scope: Any, receive: Any, send: Any) -> None:
        scope["extensions"] = {auth.LOCAL_KEY: True}
        await app(scope, receive, send)

    transport = httpx.ASGITransport(app=on_unix_socket, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://manager")


async def _caught_up() -> None:
    return None


def _cluster(*, leader: Any = lambda: True, **methods: Any) -> Any:
    return SimpleNamespace(
        is_leader=leader, leader_api_addr=lambda: None, observe_request=lambda *_: None, **methods
    )


def _check(response: httpx.Response, caplog: pytest.LogCaptureFixture, where: str) -> None:
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/json", response.text
    body = response.json()
    rid = body["request_id"]
    assert body["error"] == "internal" and rid in body["message"] and len(rid) == 16
    assert response.headers["x-request-id"] == rid
    records = [r for r in caplog.records if rid in r.getMessage()]
    assert len(records) == 1, [r.getMessage() for r in caplog.records]
    [record] = records
    assert record.levelno == logging.ERROR and where in record.getMessage()
    assert record.exc_info is not None and record.exc_info[0] is Boom, "the traceback is logged"
    assert "the secret detail" not in response.text, "the details stay in the log"


async def test_an_exception_in_a_route_answers_json_with_a_request_id(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def cluster_info() -> Any:
        raise Boom("the secret detail")

    async with _api(_cluster(info=cluster_info)) as client:
        with caplog.at_level(logging.ERROR):
            response = await client.get("/v1/cluster")
    _check(response, caplog, "GET '/v1/cluster'")


async def test_an_exception_in_front_of_the_routes_answers_json_with_a_request_id(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def is_leader() -> bool:
        raise Boom("the secret detail")

    # raised by leader routing, outside FastAPI
    async with _api(_cluster(leader=is_leader)) as client:
        with caplog.at_level(logging.ERROR):
            response = await client.post("/v1/services", json={})
    _check(response, caplog, "POST '/v1/services'")


async def test_each_request_has_its_own_id(caplog: pytest.LogCaptureFixture) -> None:
    async def cluster_info() -> Any:
        raise Boom("the secret detail")

    async with _api(_cluster(info=cluster_info)) as client:
        ids = {(await client.get("/v1/cluster")).json()["request_id"] for _ in range(3)}
    assert len(ids) == 3
