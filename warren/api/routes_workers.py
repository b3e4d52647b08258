"""Worker routes (docs/worker-protocol.md): join, the session long-poll, task status and log chunks.

All are POSTs, so a follower forwards them to the leader, the only manager that keeps sessions.
Every call but the join carries `Authorization: Bearer <session secret>`, checked against the node's
replicated digest in constant time; the secret is never logged or echoed.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import FastAPI, Header, Path, Request

from warren.api import answers as A
from warren.api import auth, models
from warren.api.params import bearer
from warren.api.responses import JSON, error_response
from warren.config import LOG_CHUNK_MAX_BYTES
from warren.errors import ForbiddenError
from warren.formats import split_host_port
from warren.manager.dispatcher import NodeReport, check_secret
from warren.manager.logrelay import LogGoneError
from warren.manager.manager import Manager
from warren.store import commands as c

LOG_END_HEADER = "x-warren-log-end"
RequestIdPath = Annotated[str, Path(pattern=r"^[0-9a-f]{1,64}$")]
Authorization = Annotated[str | None, Header()]


def _same_node(request: Request, node: str) -> None:
    """A worker certificate speaks only for its own node (a manager's local worker uses the
    manager's certificate)."""
    peer = auth.caller(request.scope)
    if peer is not None and peer.role == "worker" and peer.name != node:
        raise ForbiddenError(f"this certificate belongs to {peer.name}, not to {node}")


def add_routes(app: FastAPI, manager: Manager) -> None:
    store = manager.consensus.store

    @app.post(
        "/v1/workers/join",
        status_code=201,
        response_model=A.WorkerJoined,
        responses=A.errors(400, 401, 409, 413),
    )
    async def worker_join(body: models.WorkerJoinRequest) -> JSON:
        split_host_port(body.addr, field="addr", default_port=0)
        doc = await manager.register_worker(
            body.token, body.addr, dict(body.labels), body.resources.model_dump(), body.csr
        )
        return JSON(doc, status_code=201)

    @app.post("/v1/dispatcher/session", response_model=A.Session, responses=A.errors(400, 401, 413))
    async def session(
        request: Request, body: models.SessionRequest, authorization: Authorization = None
    ) -> JSON:
        _same_node(request, body.node)
        check_secret(store, body.node, bearer(authorization))
        dispatcher = manager.dispatcher()
        report = None
        if body.addr is not None or body.labels is not None or body.resources is not None:
            if body.addr is not None:
                split_host_port(body.addr, field="addr", default_port=0)
            report = NodeReport(
                body.addr,
                None if body.labels is None else dict(body.labels),
                None if body.resources is None else body.resources.model_dump(),
            )
        return JSON(await dispatcher.session(body.node, body.known, report))

    @app.post("/v1/dispatcher/status", response_model=A.StatusAccepted, responses=A.errors(400, 401, 413))
    async def status(
        request: Request, body: models.StatusRequest, authorization: Authorization = None
    ) -> JSON:
        _same_node(request, body.node)
        check_secret(store, body.node, bearer(authorization))
        dispatcher = manager.dispatcher()
        updates = [
            c.TaskStatus(
                task_id=u.task_id,
                state=u.state,
                message=u.message,
                at=u.at,
                node=body.node,
                container_id=u.container_id,
                exit_code=u.exit_code,
                health=u.health,
            )
            for u in body.updates
        ]
        await dispatcher.report_status(body.node, updates)
        return JSON({"accepted": len(updates)})

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
        dispatcher = manager.dispatcher()
        req = dispatcher.logs.get(request_id)
        if req is None:
            return error_response(410, "gone", "no such log request (the client went away?): stop sending")
        _same_node(request, req.node)
        check_secret(store, req.node, secret)
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
        dispatcher.touch(req.node)
        try:
            await dispatcher.logs.deliver(request_id, data, end)
        except LogGoneError as exc:
            return error_response(410, "gone", f"{exc}: stop sending")
        return JSON({"accepted": len(data)})
