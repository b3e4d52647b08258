"""Response bodies of the API, for /openapi.json. Handlers return orjson responses directly (FastAPI does
not re-validate them); tests/integration/test_api_schema.py checks that answers match these models."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel

from warren.api.models import ServiceSpec


class ErrorBody(BaseModel):
    error: str
    message: str


class Health(BaseModel):
    status: Literal["ok"]
    node: str


class Ready(BaseModel):
    ready: bool
    reason: str
    node: str
    role: str
    term: int
    leader_id: int | None
    commit_index: int | None
    applied_index: int | None


class LeaderRef(BaseModel):
    name: str | None
    api_addr: str | None
    raft_id: int


class Quorum(BaseModel):
    managers: int
    needed: int
    reachable: int
    ok: bool


class ManagerRow(BaseModel):
    name: str
    raft_id: int | None
    api_addr: str | None
    raft_addr: str | None
    role: str
    status: Literal["ready", "not ready", "unreachable"]


class RaftState(BaseModel):
    term: int
    commit_index: int | None
    applied_index: int | None


class ClusterInfo(BaseModel):
    cluster_id: str
    created_at: float | None
    node: str
    leader: LeaderRef | None
    quorum: Quorum
    managers: list[ManagerRow]
    workers: int
    raft: RaftState


class JoinToken(BaseModel):
    role: Literal["manager", "worker"]
    token: str
    expires_at: float
    ttl_s: float


class Registered(BaseModel):
    name: str
    raft_id: int
    cluster_id: str


class Promoted(BaseModel):
    name: str
    voters: int
    needed: int


class Node(BaseModel):
    name: str
    role: Literal["manager", "worker"]
    state: str
    availability: str
    raft_id: int | None
    api_addr: str | None
    raft_addr: str | None
    labels: dict[str, Any]
    created_at: float
    updated_at: float
    version: int


class Service(BaseModel):
    id: str
    name: str
    spec: ServiceSpec
    version: int
    created_at: float
    updated_at: float


class Removed(BaseModel):
    removed: str


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for the error statuses an operation can answer (see docs/api.md)."""
    return {status: {"model": ErrorBody} for status in (*statuses, 503)}
