"""The API's last line of defence: an unexpected exception answers 500 with the API's JSON error body
and a request id, and the log shows that id with the traceback; never Starlette's plain-text 500.

The boundary wraps the whole API stack (authorization and leader routing included), so an exception
raised anywhere in it is caught here; FastAPI's own server-error handler (installed by create_app with
`log_unexpected`) answers for exceptions raised in the routes, and the boundary then only sees the
exception again, already logged and answered.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from warren.api.responses import REQUEST_ID_KEY, internal_error_response

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

log = logging.getLogger(__name__)

_LOGGED_KEY = "warren.error_logged"  # scope[...]: the exception already logged for this request


def request_id(scope: Scope) -> str:
    """This request's id (made on first use): random, 16 hex digits."""
    rid = scope.get(REQUEST_ID_KEY)
    if not isinstance(rid, str):
        rid = scope[REQUEST_ID_KEY] = secrets.token_hex(8)
    return rid


def log_unexpected(scope: Scope, exc: BaseException) -> str:
    """Log `exc` with its traceback and the request id (once per exception); the request id."""
    rid = request_id(scope)
    if scope.get(_LOGGED_KEY) is not exc:
        scope[_LOGGED_KEY] = exc
        log.error(
            "unexpected error answering %s %r (request id %s)",
            scope.get("method"),
            scope.get("path"),
            rid,
            exc_info=exc,
        )
    return rid


class ErrorBoundary:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id(scope)
        started = completed = False

        async def tracked(message: Message) -> None:
            nonlocal started, completed
            if message["type"] == "http.response.start":
                started = True
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                completed = True
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        except Exception as exc:  # the API's task boundary: log, answer if still possible
            rid = log_unexpected(scope, exc)
            if not started:
                await internal_error_response(rid)(scope, receive, send)
            elif not completed:
                raise  # an answer cut short: the server drops the connection
