"""The CLI's tests' stand-in for a manager: a FakeManager answering the API's routes through
httpx.MockTransport, `run` (`warren ...` through `main` against it) and documents it answers with."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx

from warren.cli.main import main
from warren.client import ManagerClient

Route = Callable[[httpx.Request], httpx.Response]
NOW = 1_790_000_000.0

CLUSTER = {
    "cluster_id": "cluster-abc123",
    "created_at": 1790000000.0,
    "node": "manager-1",
    "leader": {"name": "manager-1", "api_addr": "192.168.1.10:8080", "raft_id": 1},
    "quorum": {"managers": 3, "needed": 2, "reachable": 3, "ok": True},
    "managers": [
        {"name": "manager-1", "raft_id": 1, "api_addr": "192.168.1.10:8080", "raft_addr": "192.168.1.10:7946",
         "role": "leader", "status": "ready"},
        {"name": "manager-2", "raft_id": 2, "api_addr": "192.168.1.11:8080", "raft_addr": "192.168.1.11:7946",
         "role": "follower", "status": "ready"},
        {"name": "manager-3", "raft_id": 3, "api_addr": "192.168.1.12:8080", "raft_addr": "192.168.1.12:7946",
         "role": "follower", "status": "ready"},
    ],
    "workers": 0,
    "raft": {"term": 3, "commit_index": 120, "applied_index": 120},
}


class FakeManager:
    """Routes by (method, path); records every request."""

    def __init__(self, routes: dict[tuple[str, str], Route | Any]) -> None:
        self.routes = routes
        self.requests: list[httpx.Request] = []
        self.managers: list[str] = []

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        route = self.routes.get((request.method, request.url.path))
        if route is None:
            return httpx.Response(404, json={"error": "not_found", "message": f"no route {request.url.path}"})
        if callable(route):
            response: httpx.Response = route(request)
            return response
        return httpx.Response(201 if request.method == "POST" else 200, json=route)

    def connect(self, manager: str) -> ManagerClient:
        self.managers.append(manager)
        return ManagerClient(manager, transport=httpx.MockTransport(self.handle), sleep=lambda s: None)

    def body(self, index: int = -1) -> Any:
        return json.loads(self.requests[index].content)


def run(fake: FakeManager, *argv: str) -> int:
    return main(list(argv), connect=fake.connect)


def task(tid: str, slot: int | None, state: str, *, node: str | None = "worker-1", desired: str = "running",
         age: float = 12, message: str = "", health: str = "none", created: float = 0) -> dict[str, Any]:
    return {"id": tid, "service_id": "svc-1", "service_name": "web",
            "name": f"web.{slot}" if slot is not None else f"web.{node}", "slot": slot, "node": node,
            "desired_state": desired, "state": state, "message": message, "health": health,
            "container_id": None, "exit_code": None, "spec_digest": "d1", "created_at": NOW - 1000 + created,
            "updated_at": NOW - age, "started_at": NOW - age - 3 if state == "running" else None,
            "version": 5}
