"""Node routes: list, inspect, remove, and set a node's availability."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi import params as fastapi_params

from warren.api import answers as A
from warren.api import models
from warren.api.params import NodePath
from warren.api.responses import JSON
from warren.manager.control.nodes import Nodes


def add_routes(app: FastAPI, nodes: Nodes, consistent: fastapi_params.Depends) -> None:
    @app.get("/v1/nodes", dependencies=[consistent], response_model=list[A.Node], responses=A.errors(400))
    async def node_list() -> JSON:
        return JSON(nodes.all())

    @app.get(
        "/v1/nodes/{name}", dependencies=[consistent], response_model=A.Node, responses=A.errors(400, 404)
    )
    async def node_get(name: NodePath) -> JSON:
        return JSON(nodes.get(name))

    @app.delete("/v1/nodes/{name}", response_model=A.Removed, responses=A.errors(400, 404, 409))
    async def node_remove(name: NodePath) -> JSON:
        return JSON(await nodes.remove(name))

    @app.post("/v1/nodes/{name}/availability", response_model=A.Node, responses=A.errors(400, 404, 413))
    async def node_availability(name: NodePath, body: models.NodeAvailability) -> JSON:
        return JSON(await nodes.set_availability(name, body.availability))

    @app.post("/v1/nodes/{name}/labels", response_model=A.Node, responses=A.errors(400, 404, 413))
    async def node_labels(name: NodePath, body: models.NodeLabels) -> JSON:
        return JSON(await nodes.set_labels(name, dict(body.add), list(body.remove)))
