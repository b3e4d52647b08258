"""Config routes: create, list, inspect, remove (docs/configs.md). A config is no secret: GET one
answers its content (base64); the list gives each one's size and digest."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi import params as fastapi_params

from warren.api import answers as A
from warren.api import models
from warren.api.params import NamePath
from warren.api.responses import JSON
from warren.manager.control.configs import Configs, decode_content


def add_routes(app: FastAPI, configs: Configs, consistent: fastapi_params.Depends) -> None:
    @app.post("/v1/configs", status_code=201, response_model=A.ConfigInfo, responses=A.errors(400, 409, 413))
    async def config_create(body: models.ConfigCreate) -> JSON:
        return JSON(await configs.create(body.name, decode_content(body.data)), status_code=201)

    @app.get("/v1/configs", dependencies=[consistent], response_model=list[A.ConfigInfo],
             responses=A.errors(400))
    async def config_list() -> JSON:
        return JSON(configs.all())

    @app.get("/v1/configs/{name}", dependencies=[consistent], response_model=A.Config,
             responses=A.errors(400, 404))
    async def config_get(name: NamePath) -> JSON:
        return JSON(configs.get(name))

    @app.delete("/v1/configs/{name}", response_model=A.Removed, responses=A.errors(400, 404, 409))
    async def config_remove(name: NamePath) -> JSON:
        return JSON(await configs.remove(name))
