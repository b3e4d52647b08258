"""The HTTP API under /v1 (FastAPI, orjson responses), assembled: the error handlers, and one
`routes_<resource>` module per service object of the manager's control surface
(warren.manager.control), which does the work; the routes only read requests and write answers.

In front of the routes: the error boundary, authorization (auth.py) and leader routing (routing.py).
Error answers are always `{"error": code, "message": text}`;
the status for each Warren error is in one table (warren.errors.HTTP_ANSWERS). See docs/api.md. An
unexpected exception answers 500 `internal` with a `request_id` too, which the log shows with the
traceback (warren.api.boundary).
"""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from warren import __version__
from warren.api import (
    auth,
    boundary,
    routes_backups,
    routes_cluster,
    routes_configs,
    routes_events,
    routes_logs,
    routes_membership,
    routes_nodes,
    routes_secrets,
    routes_services,
    routes_volumes,
    routes_workers,
)
from warren.api.forwarder import Forwarder
from warren.api.responses import JSON, error_response, internal_error_response, validation_summary
from warren.api.routing import LeaderRouting
from warren.config import ManagerSettings
from warren.errors import WarrenError, http_answer
from warren.manager.control import Control

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


def create_app(control: Control, settings: ManagerSettings, forwarder: Forwarder) -> boundary.ErrorBoundary:
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
            await control.cluster.read_barrier()

    Consistent = Depends(consistent_read)

    routes_cluster.add_routes(app, control.cluster, Consistent)
    routes_membership.add_routes(app, control.membership)
    routes_backups.add_routes(app, control.backups)
    routes_nodes.add_routes(app, control.nodes, Consistent)
    routes_services.add_routes(app, control.services, Consistent)
    routes_logs.add_routes(app, control.logs)
    routes_workers.add_routes(app, control.workers)
    routes_secrets.add_routes(app, control.secrets, Consistent)
    routes_configs.add_routes(app, control.configs, Consistent)
    routes_volumes.add_routes(app, control.volumes, Consistent)
    routes_events.add_routes(app, control.events)

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
                front=control.cluster,
                forwarder=forwarder,
                max_body=settings.max_request_bytes,
                retry_after_s=settings.retry_after_s,
            ),
            control.nodes.role_of,
            control.nodes.catch_up,
        )
    )
