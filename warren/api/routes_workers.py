"""Worker routes (docs/worker-protocol.md): the session long-poll, task status and log chunks (the
join is a membership route).

All are POSTs, so a follower forwards them to the leader, the only manager that keeps sessions.
Every call but the join carries `Authorization: Bearer <session secret>`, checked against the node's
replicated digest in constant time; the secret is never logged or echoed.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import FastAPI, Header, Path, Request
from msgspec import UNSET

from warren.api import answers as A
from warren.api import auth, models
from warren.api.params import bearer
from warren.api.responses import JSON, error_response
from warren.config import LOG_CHUNK_MAX_BYTES
from warren.errors import ForbiddenError
from warren.manager.control.workers import Workers

LOG_END_HEADER = "x-warren-log-end"
RequestIdPath = Annotated[str, Path(pattern=r"^[0-9a-f]{1,64}$")]
Authorization = Annotated[str | None, Header()]


def _same_node(request: Request, node: str) -> None:
    """A worker certificate speaks only for its own node (a manager's local worker uses the
    manager's certificate)."""
    peer = auth.caller(request.scope)
    if peer is not None and peer.role == "worker" and peer.name != node:
        raise ForbiddenError(f"this certificate belongs to {peer.name}, not to {node}")


def add_routes(app: FastAPI, workers: Workers) -> None:
    @app.post("/v1/dispatcher/session", response_model=A.Session, responses=A.errors(400, 401, 413))
    async def session(
        request: Request, body: models.SessionRequest, authorization: Authorization = None
    ) -> JSON:
        _same_node(request, body.node)
        workers.authenticate(body.node, bearer(authorization))
        resources = None if body.resources is None else body.resources.model_dump()
        volumes = None if body.volumes is None else [v.model_dump() for v in body.volumes]
        # A worker that leaves the key out does not ask for endpoints (an older one): never sent them.
        known_endpoints = body.known_endpoints if "known_endpoints" in body.model_fields_set else UNSET
        return JSON(await workers.session(
            body.node, body.known, body.addr, body.labels, resources, volumes, known_endpoints
        ))

    @app.post("/v1/dispatcher/status", response_model=A.StatusAccepted, responses=A.errors(400, 401, 413))
    async def status(
        request: Request, body: models.StatusRequest, authorization: Authorization = None
    ) -> JSON:
        _same_node(request, body.node)
        workers.authenticate(body.node, bearer(authorization))
        updates = [
            {
                "task_id": u.task_id,
                "state": u.state,
                "message": u.message,
                "at": u.at,
                "container_id": u.container_id,
                "exit_code": u.exit_code,
                "health": u.health,
                # Only when reported: a status without ports keeps the task's (and needs no newer peers).
                **({} if u.ports is None else {"ports": u.ports}),
            }
            for u in body.updates
        ]
        return JSON({"accepted": await workers.report_status(body.node, updates)})

    @app.post(
        "/v1/dispatcher/logs/{request_id}",
        response_model=A.LogChunkAccepted,
        responses=A.errors(400, 401, 410, 413),
        openapi_extra={
            "requestBody": {"content": {"application/octet-stream": {"schema": {"type": "string"}}}}
        },
    )
    async def log_chunk(
        request_id: RequestIdPath, request: Request, authorization: Authorization = None
    ) -> JSON:
        secret = bearer(authorization)
        upload = workers.log_upload(request_id)
        if upload is None:
            return error_response(410, "gone", "no such log request (the client went away?): stop sending")
        _same_node(request, upload.node)
        workers.authenticate(upload.node, secret)
        # The body is already in memory (LeaderRouting read it, at most max_request_bytes); a chunk
        # is queued for the client whole, so it is held to the worker's chunk size.
        data = await request.body()
        if len(data) > LOG_CHUNK_MAX_BYTES:
            return error_response(
                413,
                "too_large",
                f"log chunk of {len(data)} bytes is larger than the {LOG_CHUNK_MAX_BYTES} bytes allowed",
            )
        end = request.headers.get(LOG_END_HEADER, "").strip() == "1"
        gone = await upload.deliver(data, end)
        if gone is not None:
            return error_response(410, "gone", f"{gone}: stop sending")
        return JSON({"accepted": len(data)})
