"""Secret routes: create, list, inspect, remove (docs/secrets.md). The value goes in, base64, and never
comes out: answers carry a secret's metadata only, and no error quotes a value."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi import params as fastapi_params

from warren.api import answers as A
from warren.api import models
from warren.api.params import NamePath
from warren.api.responses import JSON
from warren.manager.control.secrets import Secrets, decode_value


def add_routes(app: FastAPI, secrets: Secrets, consistent: fastapi_params.Depends) -> None:
    @app.post("/v1/secrets", status_code=201, response_model=A.Secret, responses=A.errors(400, 409, 413))
    async def secret_create(body: models.SecretCreate) -> JSON:
        return JSON(await secrets.create(body.name, decode_value(body.data)), status_code=201)

    @app.get("/v1/secrets", dependencies=[consistent], response_model=list[A.Secret], responses=A.errors(400))
    async def secret_list() -> JSON:
        return JSON(secrets.all())

    @app.get(
        "/v1/secrets/{name}", dependencies=[consistent], response_model=A.Secret, responses=A.errors(400, 404)
    )
    async def secret_get(name: NamePath) -> JSON:
        return JSON(secrets.get(name))

    @app.delete("/v1/secrets/{name}", response_model=A.Removed, responses=A.errors(400, 404, 409))
    async def secret_remove(name: NamePath) -> JSON:
        return JSON(await secrets.remove(name))
