"""The API's JSON response class and its one error body, shared by the routes and the ASGI layer."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson
from fastapi.responses import JSONResponse

from warren.pki import tokens

# scope[REQUEST_ID_KEY]: the request's id (warren.api.boundary), shown in 500 answers and the log.
REQUEST_ID_KEY = "warren.request_id"
REQUEST_ID_HEADER = "x-request-id"


class JSON(JSONResponse):
    """JSON rendered by orjson (the API's response class)."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def error_response(status: int, code: str, message: str, retry_after_s: int | None = None) -> JSON:
    """`{"error": code, "message": ...}` (any join token in the message redacted); a 503 says when to
    retry."""
    headers = {"Retry-After": str(retry_after_s)} if retry_after_s is not None and status == 503 else None
    return JSON({"error": code, "message": tokens.redact(message)}, status_code=status, headers=headers)


def internal_error_response(request_id: str) -> JSON:
    """The answer to an unexpected exception: the error body, plus the request id the log shows with
    the traceback (the details stay in the log)."""
    return JSON(
        {
            "error": "internal",
            "message": f"internal error (request id {request_id}); the manager's log has the details",
            "request_id": request_id,
        },
        status_code=500,
        headers={REQUEST_ID_HEADER: request_id},
    )


def validation_summary(errors: Sequence[Mapping[str, Any]], where_none: str) -> str:
    """The first three of pydantic's validation errors as `field.path: message; ...` (a request's
    `body` part left out of the path; `where_none` names an error with no path)."""
    parts = []
    for err in errors[:3]:
        where = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or where_none
        parts.append(f"{where}: {err.get('msg', 'invalid')}")
    return "; ".join(parts)
