"""The HTTP API under /v1 (FastAPI, orjson responses). Routes are thin: the Manager does the work.

Health, cluster, manager and node routes are here; services and tasks in routes_services.py, the
worker protocol in routes_workers.py. Error answers are always `{"error": code, "message": text}`;
the status for each Warren error is in one table (warren.errors.HTTP_ANSWERS). See docs/api.md. An
unexpected exception answers 500 `internal` with a `request_id` too, which the log shows with the
traceback (warren.api.boundary).
"""

from __future__ import annotations

import logging
import os
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse
from starlette.background import BackgroundTask
from starlette.exceptions import HTTPException as StarletteHTTPException

from warren import __version__
from warren.api import answers as A
from warren.api import auth, boundary, models, routes_secrets, routes_services, routes_workers
from warren.api.forwarder import Forwarder
from warren.api.params import NodePath
from warren.api.responses import JSON, error_response, internal_error_response, validation_summary
from warren.api.routing import LeaderRouting
from warren.errors import (
    NotFoundError,
    UnauthorizedError,
    WarrenError,
    http_answer,
)
from warren.formats import split_host_port
from warren.manager.manager import Manager
from warren.manager.metrics import ManagerMetrics, health_body, ready_body
from warren.pki import peek
from warren.store import queries

log = logging.getLogger(__name__)


def _validation_message(exc: RequestValidationError) -> str:
    errors = exc.errors()
    if (
        errors
        and tuple(errors[0].get("loc", ())) == ("body",)
        and errors[0].get("type") == "model_attributes_type"
    ):
        return "invalid request: the body must be a JSON object (Content-Type: application/json)"
    return "invalid request: " + validation_summary(errors, "body")


def _pair_exclusive_bounds(node: Any) -> None:
    """Give every JSON-schema `exclusiveMinimum`/`exclusiveMaximum` the matching inclusive bound too.

    The same set of values (x > 0 and x >= 0 is x > 0), but OpenAPI 3.0 tools (schemathesis 3.x among
    them) read the exclusive keywords as flags of `minimum`/`maximum` and fail without those.
    """
    if isinstance(node, dict):
        for exclusive, inclusive in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
            value = node.get(exclusive)
            if isinstance(value, int | float) and not isinstance(value, bool) and inclusive not in node:
                node[inclusive] = value
        for child in node.values():
            _pair_exclusive_bounds(child)
    elif isinstance(node, list):
        for child in node:
            _pair_exclusive_bounds(child)


def add_error_handlers(app: FastAPI, retry_after_s: int | None = None) -> None:
    """The API's error answers: Warren's errors by the one table (`http_answer`), validation errors as
    400 naming the field, unknown routes and methods, and anything unexpected as a JSON 500 with a
    request id. Also used by the tests that mount single route modules."""

    @app.exception_handler(WarrenError)
    async def warren_error(_: Request, exc: WarrenError) -> JSON:
        status, code = http_answer(exc)
        if status >= 500 and status != 503:
            log.error("request failed: %s", exc)
        return error_response(status, code, str(exc), retry_after_s)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSON:
        # Starlette's ServerErrorMiddleware: answers with this, then raises exc again for the
        # ErrorBoundary around the stack, which finds it logged and answered.
        return internal_error_response(boundary.log_unexpected(request.scope, exc))

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSON:
        return error_response(400, "invalid", _validation_message(exc))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSON:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "invalid")
        return error_response(exc.status_code, code, str(exc.detail))


def create_app(manager: Manager, metrics: ManagerMetrics, forwarder: Forwarder) -> boundary.ErrorBoundary:
    settings = manager.settings
    app = FastAPI(
        title="Warren API",
        version=__version__,
        default_response_class=JSON,
        docs_url=None,
        redoc_url=None,
    )

    add_error_handlers(app, settings.retry_after_s)

    async def consistent_read(consistent: Annotated[bool, Query()] = False) -> None:
        """With ?consistent=true (on the leader; followers forward it), wait for the read barrier."""
        if consistent:
            await manager.consensus.read_barrier()

    Consistent = Depends(consistent_read)

    # -- health ---------------------------------------------------------------------------------------

    @app.get("/v1/health", response_model=A.Health)
    async def health() -> JSON:
        return JSON(health_body(manager.identity.name))

    @app.get("/v1/ready", response_model=A.Ready, responses={503: {"model": A.Ready}})
    async def ready() -> JSON:
        code, body = ready_body(manager.consensus, manager.identity.name)
        return JSON(body, status_code=code)

    # -- cluster --------------------------------------------------------------------------------------

    @app.get("/v1/cluster", dependencies=[Consistent], response_model=A.ClusterInfo, responses=A.errors(400))
    async def cluster_info() -> JSON:
        return JSON(await manager.cluster_info())

    @app.post(
        "/v1/cluster/join-tokens", status_code=201, response_model=A.JoinToken, responses=A.errors(400, 413)
    )
    async def join_token(body: models.JoinTokenRequest) -> JSON:
        return JSON(await manager.issue_token(body.role, body.rotate, body.ttl_s), status_code=201)

    @app.get(
        "/v1/cluster/backup",
        response_class=FileResponse,
        responses={200: {"content": {"application/vnd.sqlite3": {}}}, **A.errors()},
    )
    async def backup() -> FileResponse:
        path = await manager.backup()
        return FileResponse(
            path,
            media_type="application/vnd.sqlite3",
            filename="warren-backup.db",
            background=BackgroundTask(os.unlink, path),
        )

    # -- certificates ---------------------------------------------------------------------------------

    @app.get("/v1/ca", response_model=A.CACertificate)
    async def ca_certificate() -> JSON:
        # Open to anyone: a joining node checks it against its token's digest before sending anything.
        pem = manager.ca.ca_pem()
        return JSON({"ca": pem.decode("ascii"), "digest": peek.ca_digest(pem)})

    @app.post("/v1/certs/renew", response_model=A.Issued, responses=A.errors(400, 401, 403, 413))
    async def certificate_renew(request: Request, body: models.RenewRequest) -> JSON:
        peer = auth.caller(request.scope)
        if peer is None:
            raise UnauthorizedError("renewing needs the node's current certificate")
        return JSON(await manager.renew_certificate(peer, body.csr))

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
            await manager.register_manager(body.token, body.api_addr, body.raft_addr, body.csr),
            status_code=201,
        )

    @app.post(
        "/v1/managers/{name}/promote", response_model=A.Promoted, responses=A.errors(400, 401, 404, 409, 413)
    )
    async def manager_promote(name: NodePath, body: models.PromoteRequest) -> JSON:
        return JSON(await manager.promote_manager(name, body.token))

    # -- nodes ----------------------------------------------------------------------------------------

    @app.get("/v1/nodes", dependencies=[Consistent], response_model=list[A.Node], responses=A.errors(400))
    async def node_list() -> JSON:
        return JSON(queries.nodes(manager.conn))

    @app.get(
        "/v1/nodes/{name}", dependencies=[Consistent], response_model=A.Node, responses=A.errors(400, 404)
    )
    async def node_get(name: NodePath) -> JSON:
        node = queries.node(manager.conn, name)
        if node is None:
            raise NotFoundError(f"no node named {name!r}")
        return JSON(node)

    @app.delete("/v1/nodes/{name}", response_model=A.Removed, responses=A.errors(400, 404, 409))
    async def node_remove(name: NodePath) -> JSON:
        return JSON(await manager.remove_node(name))

    @app.post("/v1/nodes/{name}/availability", response_model=A.Node, responses=A.errors(400, 404, 413))
    async def node_availability(name: NodePath, body: models.NodeAvailability) -> JSON:
        return JSON(await manager.set_availability(name, body.availability))

    routes_services.add_routes(app, manager, Consistent)
    routes_workers.add_routes(app, manager)
    routes_secrets.add_routes(app, manager, Consistent)

    build_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            _pair_exclusive_bounds(build_openapi())
        return app.openapi_schema or {}

    app.openapi = openapi  # type: ignore[method-assign]

    return boundary.ErrorBoundary(
        auth.Authorization(
            LeaderRouting(
                app,
                consensus=manager.consensus,
                forwarder=forwarder,
                metrics=metrics,
                max_body=settings.max_request_bytes,
                retry_after_s=settings.retry_after_s,
            ),
            manager.consensus.store,
        )
    )
