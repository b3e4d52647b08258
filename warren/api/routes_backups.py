"""The backup route: a consistent copy of the state, as an SQLite file (leader only)."""

from __future__ import annotations

import os

from fastapi import FastAPI
from fastapi.responses import FileResponse
from starlette.background import BackgroundTask

from warren.api import answers as A
from warren.manager.control.backups import Backups


def add_routes(app: FastAPI, backups: Backups) -> None:
    @app.get(
        "/v1/cluster/backup",
        response_class=FileResponse,
        responses={200: {"content": {"application/vnd.sqlite3": {}}}, **A.errors()},
    )
    async def backup() -> FileResponse:
        path = await backups.backup()
        return FileResponse(
            path,
            media_type="application/vnd.sqlite3",
            filename="warren-backup.db",
            background=BackgroundTask(os.unlink, path),
        )
