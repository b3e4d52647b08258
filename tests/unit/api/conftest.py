"""The API tests' client: the secret and service routes over a manager's state in one process
(tests/unit/manager/secrets_world.py), with the API's error handlers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from starlette.testclient import TestClient

from tests.unit.manager.secrets_world import World, add_api_routes
from warren.api.app import add_error_handlers
from warren.api.responses import JSON


@pytest.fixture
def client(tmp_path: Path) -> Iterator[tuple[TestClient, World]]:
    """A test client of the routes, and the world behind them."""
    world = World(tmp_path)
    app = FastAPI(default_response_class=JSON)
    add_error_handlers(app)
    add_api_routes(app, world)
    with TestClient(app) as test_client:
        yield test_client, world
