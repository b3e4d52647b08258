"""Health, readiness and `cluster info` routes."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi import params as fastapi_params

from warren.api import answers as A
from warren.api.responses import JSON
from warren.manager.control.cluster import Cluster


def add_routes(app: FastAPI, cluster: Cluster, consistent: fastapi_params.Depends) -> None:
    @app.get("/v1/health", response_model=A.Health)
    async def health() -> JSON:
        return JSON(cluster.health())

    @app.get("/v1/ready", response_model=A.Ready, responses={503: {"model": A.Ready}})
    async def ready() -> JSON:
        code, body = cluster.ready()
        return JSON(body, status_code=code)

    @app.get("/v1/cluster", dependencies=[consistent], response_model=A.ClusterInfo, responses=A.errors(400))
    async def cluster_info() -> JSON:
        return JSON(await cluster.info())
