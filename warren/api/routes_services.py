"""Service and task routes: create, read, update, roll back, remove, and `service ps`."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from fastapi import FastAPI, Header, Query
from fastapi import params as fastapi_params
from pydantic import BaseModel

from warren.api import answers as A
from warren.api import models
from warren.api.params import NamePath, if_match_version
from warren.api.responses import JSON
from warren.errors import InvalidError
from warren.formats import NAME_PATTERN
from warren.manager.control.services import Services
from warren.spec.mounts import ConfigRef
from warren.spec.service import ServiceSpec, decode

NodeQuery = Annotated[str | None, Query(pattern=models.NODE_NAME_PATTERN)]
ServiceQuery = Annotated[str | None, Query(pattern=NAME_PATTERN)]
IfMatch = Annotated[str | None, Header()]


def add_routes(app: FastAPI, services: Services, consistent: fastapi_params.Depends) -> None:
    @app.get(
        "/v1/services", dependencies=[consistent], response_model=list[A.Service], responses=A.errors(400)
    )
    async def service_list() -> JSON:
        return JSON(services.all())

    @app.post(
        "/v1/services", status_code=201, response_model=A.Service, responses=A.errors(400, 404, 409, 413)
    )
    async def service_create(body: models.ServiceCreate) -> JSON:
        # The request's model checked the body; the typed spec is what travels on from here.
        spec = decode(ServiceSpec, body.model_dump(exclude={"name"}))
        return JSON(await services.create(body.name, spec), status_code=201)

    @app.get(
        "/v1/services/{name}",
        dependencies=[consistent],
        response_model=A.Service,
        responses=A.errors(400, 404),
    )
    async def service_get(name: NamePath) -> JSON:
        return JSON(services.get(name))

    @app.patch("/v1/services/{name}", response_model=A.Service, responses=A.errors(400, 404, 409, 413))
    async def service_update(name: NamePath, body: models.ServiceUpdate, if_match: IfMatch = None) -> JSON:
        changes = update_changes(body)
        if not changes:
            raise InvalidError("nothing to change: give at least one field")
        return JSON(await services.update(name, changes, if_match_version(if_match)))

    @app.post(
        "/v1/services/{name}/rollback", response_model=A.Service, responses=A.errors(400, 404, 409, 413)
    )
    async def service_rollback(name: NamePath, if_match: IfMatch = None) -> JSON:
        return JSON(await services.rollback(name, if_match_version(if_match)))

    @app.delete("/v1/services/{name}", response_model=A.Removed, responses=A.errors(400, 404, 409))
    async def service_remove(name: NamePath, if_match: IfMatch = None) -> JSON:
        return JSON(await services.remove(name, if_match_version(if_match)))

    # -- tasks ----------------------------------------------------------------------------------------

    @app.get(
        "/v1/services/{name}/tasks",
        dependencies=[consistent],
        response_model=list[A.Task],
        responses=A.errors(400, 404),
    )
    async def service_tasks(name: NamePath) -> JSON:
        return JSON(services.tasks(service=name))

    @app.get(
        "/v1/tasks", dependencies=[consistent], response_model=list[A.Task], responses=A.errors(400, 404)
    )
    async def task_list(service: ServiceQuery = None, node: NodeQuery = None) -> JSON:
        return JSON(services.tasks(service=service, node=node))


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
        elif field == "configs":  # as create stores them: the typed part's form, defaults unwritten
            value = [msgspec.to_builtins(msgspec.convert(v.model_dump(exclude_none=True), ConfigRef))
                     for v in value]
        elif isinstance(value, list):
            value = [v.model_dump() if isinstance(v, BaseModel) else v for v in value]
        changes[field] = value
    return changes
