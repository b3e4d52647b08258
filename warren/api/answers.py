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
    # The highest command version the manager applies (warren.manager.versions); absent: 1.
    command_version: int = 1


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


class WorkerRow(BaseModel):
    name: str
    state: str
    availability: str
    addr: str | None


class ClusterInfo(BaseModel):
    cluster_id: str
    created_at: float | None
    node: str
    leader: LeaderRef | None
    quorum: Quorum
    managers: list[ManagerRow]
    workers: int  # how many; kept a count for older clients
    worker_nodes: list[WorkerRow]
    raft: RaftState


class JoinToken(BaseModel):
    role: Literal["manager", "worker"]
    token: str
    expires_at: float
    ttl_s: float


class Issued(BaseModel):
    certificate: str  # PEM, for the CSR's key
    ca: str  # the cluster CA certificate, PEM
    cert_expires_at: float


class CACertificate(BaseModel):
    ca: str  # PEM
    digest: str  # what join tokens carry


class Registered(Issued):
    name: str
    raft_id: int
    cluster_id: str
    data_key: str  # the cluster data key (base64), for a joining manager only


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
    resources: dict[str, Any] = {}
    addr: str | None = None  # a worker's address (its published ports are reached there)
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
    # Progress of the last rolling update ({"state", "message", ...}); None: none yet.
    update_status: dict[str, Any] | None = None
    has_previous: bool = False  # a rollback has a spec to go back to
    replicas_running: int = 0
    replicas_desired: int = 0


class Task(BaseModel):
    id: str
    name: str  # <service>.<slot>, or <service>.<node> for a global service
    service_id: str
    service_name: str
    slot: int | None
    node: str | None
    desired_state: Literal["running", "shutdown"]
    state: str
    message: str
    health: str
    container_id: str | None
    exit_code: int | None
    spec_digest: str
    created_at: float
    updated_at: float
    started_at: float | None
    version: int


class WorkerJoined(Issued):
    name: str
    secret: str  # shown once: only its SHA-256 is replicated
    cluster_id: str
    heartbeat_period_s: float


class Assignment(BaseModel):
    task_id: str
    service_id: str
    service_name: str
    slot: int | None
    desired_state: Literal["running", "shutdown"]
    state: str
    spec: dict[str, Any]
    spec_digest: str


class LogRequest(BaseModel):
    id: str
    task_id: str
    container_id: str
    follow: bool
    tail: int | None


class EndpointTask(BaseModel):
    task_id: str
    slot: int | None  # None: a global service's task
    node: str
    addr: str  # the host part of its node's address
    healthy: bool  # health `healthy`, or no health check; and its node not down


class ServiceEndpoints(BaseModel):
    healthy: list[str]  # the distinct addresses of its healthy tasks, sorted
    tasks: list[EndpointTask]  # every task running (and that should) on a node with an address


class IngressBackend(BaseModel):
    addr: str  # its node's IP address
    port: int  # the host port its worker reported for the published port
    task_id: str
    node: str


class IngressRoute(BaseModel):
    service: str
    backends: list[IngressBackend]  # its ready replicas (running, healthy, node not down), by node, task


class Endpoints(BaseModel):
    digest: str  # covers `services` and `ingress`
    services: dict[str, ServiceEndpoints]  # every service with discovery on, by name
    # Every published ingress port (a decimal string) of every service, whether or not discovery is on.
    ingress: dict[str, IngressRoute] = {}


class Session(BaseModel):
    heartbeat_period_s: float
    digest: str
    assignments: list[Assignment] | None  # None: the worker's `known` digest is current
    log_requests: list[LogRequest]
    # With assignments: name -> value (base64) of every secret this worker's tasks that should run
    # use, and of no other; None without assignments (the worker keeps what it was given).
    secrets: dict[str, str] | None = None
    # With assignments: name -> content (base64) of every config this worker's tasks that should run
    # use, and of no other; None without assignments (the worker keeps what it has).
    configs: dict[str, str] | None = None
    # Names of this worker's volumes to remove (warren volume rm), if no running task mounts them.
    remove_volumes: list[str] = []
    # warren.spec.mounts.inventory_digest of the volumes the leader holds for this worker: one that is
    # not its own list's makes it report the list again.
    volumes_digest: str | None = None
    # Where every service's tasks are (docs/worker-protocol.md): only to a worker that sent
    # `known_endpoints`, and None while that digest is current.
    endpoints: Endpoints | None = None


class StatusAccepted(BaseModel):
    accepted: int  # updates received and committed (some may have been stale and ignored by apply)


class LogChunkAccepted(BaseModel):
    accepted: int  # bytes


class Removed(BaseModel):
    removed: str


class Secret(BaseModel):
    """A secret's metadata: its value is never part of an answer."""

    id: str
    name: str
    created_at: float
    updated_at: float
    version: int
    services: list[str] = []  # the services whose spec names it


class ConfigInfo(BaseModel):
    """A config without its content (listings)."""

    id: str
    name: str
    size: int  # bytes
    digest: str  # SHA-256 of the content, hex
    created_at: float
    updated_at: float
    version: int
    services: list[str] = []  # the services whose spec names it


class Config(ConfigInfo):
    """A config with its content."""

    data: str  # the content, base64


class VolumeOnNode(BaseModel):
    """A volume on one node, as its worker reported it."""

    node: str
    driver: Literal["docker", "process"]
    node_state: str | None  # the node's state (ready, down); None if unknown
    node_availability: str | None
    removal_pending: bool  # warren volume rm asked for it; the worker has not removed it yet
    remove_at: float | None  # when its removal was asked for
    created_at: float  # when the node first reported it
    version: int


class Volume(VolumeOnNode):
    name: str
    services: list[str]  # the services whose spec mounts a volume of this name


class VolumeDetail(BaseModel):
    name: str
    services: list[str]
    nodes: list[VolumeOnNode]


class VolumeRemoval(BaseModel):
    node: str
    name: str
    status: Literal["removal requested"]
    node_state: str | None  # down: its worker removes the volume when it is back


TEXT_STREAM: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/plain": {"schema": {"type": "string"}}}, "description": "the output, streamed"}
}


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for the error statuses an operation can answer (see docs/api.md)."""
    return {status: {"model": ErrorBody} for status in (*statuses, 503)}


# -- events (GET /v1/events) ------------------------------------------------------------------------

EventValue = str | int | float | bool | None


class Event(BaseModel):
    id: str
    time: float
    type: Literal["leader", "manager", "node", "task", "service", "secret", "config", "certificate"]
    action: str
    actor: str
    attributes: dict[str, EventValue]
    message: str


class EventsLost(BaseModel):
    after: str | None
    before: str | None
    message: str


class Events(BaseModel):
    events: list[Event]
    first: str | None
    last: str | None
    lost: EventsLost | None


EVENT_STREAM: dict[str, Any] = {
    "text/event-stream": {
        "schema": {"type": "string"},
        "example": 'id: 1234.0\nevent: task\ndata: {"id": "1234.0", ...}\n\n',
    }
}
