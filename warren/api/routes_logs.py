"""The `service logs` route: task output relayed from the workers by the leader, as a text stream."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import FastAPI, Query
from fastapi.responses import StreamingResponse

from warren.api import answers as A
from warren.api import models
from warren.api.params import NamePath
from warren.manager.control.logs import Logs

TaskQuery = Annotated[str | None, Query(pattern=models.TASK_ID_PATTERN)]
# Lines from the end of the output to start with: a count, or "all".
TailQuery = Annotated[str, Query(pattern=r"^(all|[0-9]{1,7})$")]


def add_routes(app: FastAPI, logs: Logs) -> None:
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
        feed = logs.open(name, task, follow, None if tail == "all" else int(tail))

        async def body() -> AsyncIterator[bytes]:
            try:
                async for chunk in feed.chunks():
                    yield chunk
            finally:
                feed.close()  # the client went away, or every task's output ended

        return StreamingResponse(body(), media_type="text/plain; charset=utf-8")
