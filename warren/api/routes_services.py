"""Service and task routes: create, read, update, roll back, remove, `service ps` and `service logs`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import FastAPI, Header, Query
from fastapi import params as fastapi_params
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ValidationError

from warren.api import answers as A
from warren.api import models
from warren.api.params import NamePath, if_match_version
from warren.api.responses import JSON, validation_summary
from warren.errors import InvalidError, NotFoundError
from warren.formats import NAME_PATTERN
from warren.manager import secrets
from warren.manager.manager import Manager
from warren.store import queries

TaskQuery = Annotated[str | None, Query(pattern=models.TASK_ID_PATTERN)]
NodeQuery = Annotated[str | None, Query(pattern=models.NODE_NAME_PATTERN)]
ServiceQuery = Annotated[str | None, Query(pattern=NAME_PATTERN)]
# Lines from the end of the output to start with: a count, or "all".
TailQuery = Annotated[str, Query(pattern=r"^(all|[0-9]{1,7})$")]
IfMatch = Annotated[str | None, Header()]


def add_routes(app: FastAPI, manager: Manager, consistent: fastapi_params.Depends) -> None:
    def service_id(name: str) -> str:
        service = queries.service(manager.conn, name)
        if service is None:
            raise NotFoundError(f"no service named {name!r}")
        return str(service["id"])

    @app.get(
        "/v1/services", dependencies=[consistent], response_model=list[A.Service], responses=A.errors(400)
    )
    async def service_list() -> JSON:
        return JSON(queries.services(manager.conn))

    @app.post(
        "/v1/services", status_code=201, response_model=A.Service, responses=A.errors(400, 404, 409, 413)
    )
    async def service_create(body: models.ServiceCreate) -> JSON:
        secrets.check_known(manager.conn, body.secrets)
        spec = body.model_dump(exclude={"name"})
        return JSON(await manager.create_service(body.name, spec), status_code=201)

    @app.get(
        "/v1/services/{name}",
        dependencies=[consistent],
        response_model=A.Service,
        responses=A.errors(400, 404),
    )
    async def service_get(name: NamePath) -> JSON:
        service = queries.service(manager.conn, name)
        if service is None:
            raise NotFoundError(f"no service named {name!r}")
        return JSON(service)

    @app.patch("/v1/services/{name}", response_model=A.Service, responses=A.errors(400, 404, 409, 413))
    async def service_update(name: NamePath, body: models.ServiceUpdate, if_match: IfMatch = None) -> JSON:
        changes = update_changes(body)
        if not changes:
            raise InvalidError("nothing to change: give at least one field")
        secrets.check_known(manager.conn, changes.get("secrets") or ())
        current = queries.service(manager.conn, name)
        if current is None:
            raise NotFoundError(f"no service named {name!r}")
        try:  # the spec as it will be must be a valid one (e.g. driver process needs a command)
            models.ServiceSpec.model_validate({**current["spec"], **changes}, strict=False)
        except ValidationError as exc:
            summary = validation_summary(exc.errors(), "spec")
            raise InvalidError(f"the updated spec would be invalid: {summary}") from None
        return JSON(await manager.update_service(name, changes, if_match_version(if_match)))

    @app.post(
        "/v1/services/{name}/rollback", response_model=A.Service, responses=A.errors(400, 404, 409, 413)
    )
    async def service_rollback(name: NamePath, if_match: IfMatch = None) -> JSON:
        return JSON(await manager.rollback_service(name, if_match_version(if_match)))

    @app.delete("/v1/services/{name}", response_model=A.Removed, responses=A.errors(400, 404, 409))
    async def service_remove(name: NamePath, if_match: IfMatch = None) -> JSON:
        return JSON(await manager.remove_service(name, if_match_version(if_match)))

    # -- tasks ----------------------------------------------------------------------------------------

    @app.get(
        "/v1/services/{name}/tasks",
        dependencies=[consistent],
        response_model=list[A.Task],
        responses=A.errors(400, 404),
    )
    async def service_tasks(name: NamePath) -> JSON:
        return JSON(queries.tasks(manager.conn, service_id=service_id(name)))

    @app.get(
        "/v1/tasks", dependencies=[consistent], response_model=list[A.Task], responses=A.errors(400, 404)
    )
    async def task_list(service: ServiceQuery = None, node: NodeQuery = None) -> JSON:
        sid = None if service is None else service_id(service)
        return JSON(queries.tasks(manager.conn, service_id=sid, node=node))

    # -- logs -----------------------------------------------------------------------------------------

    @app.get(
        "/v1/services/{name}/logs",
        response_class=StreamingResponse,
        responses={
            **A.TEXT_STREAM,
            307: {"description": "follow=true on a follower: ask the leader (Location)"},
            **A.errors(400, 404, 409),
        },
    )
    async def service_logs(
        name: NamePath, task: TaskQuery = None, follow: bool = False, tail: TailQuery = "100"
    ) -> StreamingResponse:
        stream = manager.open_logs(name, task, follow, None if tail == "all" else int(tail))
        relay = manager.dispatcher().logs

        async def body() -> AsyncIterator[bytes]:
            try:
                async for chunk in stream.chunks():
                    yield chunk
            finally:
                relay.close_stream(stream)  # the client went away, or every task's output ended

        return StreamingResponse(body(), media_type="text/plain; charset=utf-8")


def update_changes(body: models.ServiceUpdate) -> dict[str, Any]:
    """The fields a PATCH gives, nested parts whole and with their defaults (as create stores them), so
    an equivalent part has the same spec digest and rolls nothing out."""
    changes: dict[str, Any] = {}
    for field in body.model_fields_set:
        value = getattr(body, field)
        if value is None:
            continue  # a part cannot be cleared with null (see docs/api.md)
        if isinstance(value, BaseModel):
            value = value.model_dump()
        elif isinstance(value, list):
            value = [v.model_dump() if isinstance(v, BaseModel) else v for v in value]
        changes[field] = value
    return changes
