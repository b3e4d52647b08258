"""The cluster event stream: `GET /v1/events`, served by the manager asked (every manager derives the
same events with the same ids), as one JSON answer or, followed, as Server-Sent Events.

SSE framing (https://html.spec.whatwg.org/multipage/server-sent-events.html): an event is
`id: <id>\\nevent: <type>\\ndata: <event JSON>\\n\\n`; a gap (events the manager no longer holds) is
`event: gap\\ndata: {...}\\n\\n`, an overflow (the reader fell too far behind; the stream ends)
`event: overflow\\ndata: {...}\\n\\n`, and `: keep-alive\\n\\n` is sent while nothing happens. The
`Last-Event-ID` header a reconnecting EventSource sends is taken as `since`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

import orjson
from fastapi import FastAPI, Header, Query
from fastapi.responses import StreamingResponse

from warren.api import answers as A
from warren.api.responses import JSON
from warren.manager.control.events import EventQuery, Events

SinceQuery = Annotated[str | None, Query(max_length=64)]
FilterQuery = Annotated[list[str], Query(max_length=4096)]
# A stream's connection is not kept alive after it: when a stream ends (the manager stopping, an
# overflow) the connection closes with it, and a stopping manager waits for no idle client.
STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no", "Connection": "close"}


def frame(kind: str, payload: Any) -> bytes:
    """One SSE message for a followed stream's item (warren.manager.control.events.Item)."""
    if kind == "keepalive":
        return b": keep-alive\n\n"
    if kind == "event":
        data = orjson.dumps(payload.to_doc())
        return b"id: %s\nevent: %s\ndata: %s\n\n" % (payload.id.encode(), payload.type.encode(), data)
    # orjson writes one line (no raw newline can reach a data field).
    return b"event: %s\ndata: %s\n\n" % (kind.encode(), orjson.dumps(payload))


def add_routes(app: FastAPI, events: Events) -> None:
    @app.get(
        "/v1/events",
        response_model=A.Events,
        responses={200: {"content": A.EVENT_STREAM}, **A.errors(400)},
    )
    async def event_list(
        since: SinceQuery = None,
        type: FilterQuery = [],  # noqa: A002, B006 (the query parameter's name; FastAPI copies it)
        service: FilterQuery = [],  # noqa: B006
        node: FilterQuery = [],  # noqa: B006
        task: FilterQuery = [],  # noqa: B006
        limit: Annotated[int | None, Query(ge=1)] = None,
        follow: bool = False,
        accept: Annotated[str | None, Header(max_length=1024)] = None,
        last_event_id: Annotated[str | None, Header(max_length=64)] = None,
    ) -> Any:
        if last_event_id and last_event_id.strip():
            # An EventSource reconnecting sends its original URL (with its first `since`) and the
            # last id it received: the header is the newer of the two.
            since = last_event_id.strip()
        q = events.query(since=since, types=type, services=service, nodes=node, tasks=task, limit=limit)
        if follow or (accept is not None and "text/event-stream" in accept):
            return StreamingResponse(
                _stream(events, q), media_type="text/event-stream", headers=STREAM_HEADERS
            )
        return JSON(events.read(q))


async def _stream(events: Events, q: EventQuery) -> AsyncIterator[bytes]:
    # The retry hint: an EventSource reconnects after 1 s (with Last-Event-ID).
    yield b"retry: 1000\n\n"
    async for kind, payload in events.follow(q):
        yield frame(kind, payload)
