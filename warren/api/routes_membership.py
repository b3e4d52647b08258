"""Membership routes: the CA certificate, join tokens, manager joins (register, promote), worker joins
and certificate renewal. The joins and the CA are open to anonymous callers (warren.api.auth)."""

from __future__ import annotations

from fastapi import FastAPI, Request

from warren.api import answers as A
from warren.api import auth, models
from warren.api.params import NodePath
from warren.api.responses import JSON
from warren.errors import UnauthorizedError
from warren.formats import split_host_port
from warren.manager.control.membership import Membership


def add_routes(app: FastAPI, membership: Membership) -> None:
    @app.post(
        "/v1/cluster/join-tokens", status_code=201, response_model=A.JoinToken, responses=A.errors(400, 413)
    )
    async def join_token(body: models.JoinTokenRequest) -> JSON:
        return JSON(await membership.issue_token(body.role, body.rotate, body.ttl_s), status_code=201)

    # -- certificates ---------------------------------------------------------------------------------

    @app.get("/v1/ca", response_model=A.CACertificate)
    async def ca_certificate() -> JSON:
        # Open to anyone: a joining node checks it against its token's digest before sending anything.
        return JSON(membership.ca_certificate())

    @app.post("/v1/certs/renew", response_model=A.Issued, responses=A.errors(400, 401, 403, 413))
    async def certificate_renew(request: Request, body: models.RenewRequest) -> JSON:
        peer = auth.caller(request.scope)
        if peer is None:
            raise UnauthorizedError("renewing needs the node's current certificate")
        return JSON(await membership.renew_certificate(peer, body.csr))

    # -- managers -------------------------------------------------------------------------------------

    @app.post(
        "/v1/managers/join",
        status_code=201,
        response_model=A.Registered,
        responses=A.errors(400, 401, 409, 413),
    )
    async def manager_join(body: models.ManagerJoinRequest) -> JSON:
        split_host_port(body.api_addr, field="api_addr")
        split_host_port(body.raft_addr, field="raft_addr")
        return JSON(
            await membership.register_manager(body.token, body.api_addr, body.raft_addr, body.csr),
            status_code=201,
        )

    @app.post(
        "/v1/managers/{name}/promote", response_model=A.Promoted, responses=A.errors(400, 401, 404, 409, 413)
    )
    async def manager_promote(name: NodePath, body: models.PromoteRequest) -> JSON:
        return JSON(await membership.promote_manager(name, body.token))

    # -- workers --------------------------------------------------------------------------------------

    @app.post(
        "/v1/workers/join",
        status_code=201,
        response_model=A.WorkerJoined,
        responses=A.errors(400, 401, 409, 413),
    )
    async def worker_join(body: models.WorkerJoinRequest) -> JSON:
        split_host_port(body.addr, field="addr", default_port=0)
        doc = await membership.register_worker(
            body.token, body.addr, dict(body.labels), body.resources.model_dump(), body.csr
        )
        return JSON(doc, status_code=201)
