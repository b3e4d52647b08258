"""Volume routes: list, inspect, remove (docs/volumes.md). Volumes are made by workers when a task
mounting one starts; the API only shows where they are and asks for their removal."""

from __future__ import annotations

from typing import Annotated

from fastapi import FastAPI, Query
from fastapi import params as fastapi_params

from warren.api import answers as A
from warren.api import models
from warren.api.params import NamePath
from warren.api.responses import JSON
from warren.manager.control.volumes import Volumes

NodeQuery = Annotated[str | None, Query(pattern=models.NODE_NAME_PATTERN)]


def add_routes(app: FastAPI, volumes: Volumes, consistent: fastapi_params.Depends) -> None:
    @app.get("/v1/volumes", dependencies=[consistent], response_model=list[A.Volume], responses=A.errors(400))
    async def volume_list() -> JSON:
        return JSON(volumes.all())

    @app.get(
        "/v1/volumes/{name}",
        dependencies=[consistent],
        response_model=A.VolumeDetail,
        responses=A.errors(400, 404),
    )
    async def volume_get(name: NamePath) -> JSON:
        return JSON(volumes.get(name))

    @app.delete(
        "/v1/volumes/{name}",
        status_code=202,
        response_model=A.VolumeRemoval,
        responses=A.errors(400, 404, 409),
    )
    async def volume_remove(name: NamePath, node: NodeQuery = None) -> JSON:
        return JSON(await volumes.remove(name, node), status_code=202)
