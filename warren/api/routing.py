"""ASGI middleware in front of the API: body limit, forwarding to the leader, request metrics.

Writes (POST, PATCH, PUT, DELETE), `?consistent=true` reads, backups and task logs need the leader. A
follower forwards them to the leader's API and returns its answer unchanged; while no leader is
known, or when a forwarded request reaches a manager that is not (or no longer) the leader, the
answer is 503 with Retry-After, and the client retries. Followed logs (`?follow=true`) are an
endless stream, which forwarding (one buffered answer) cannot carry: a follower answers 307 with
the leader's address instead, and the client asks the leader itself.
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Protocol
from urllib.parse import parse_qs, quote, unquote_to_bytes

from warren.api.forwarder import FORWARDED_HEADER, Forwarder, check_headers, request_target
from warren.api.responses import error_response
from warren.errors import InvalidError, UnavailableError

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
LEADER_PATHS = frozenset({"/v1/cluster/backup"})
# Task output is relayed by the leader's dispatcher.
LOG_PATH = re.compile(r"^/v1/services/[^/]+/logs$")
# C0 controls and DEL, in the decoded path or query.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_CONTROL_BYTES = re.compile(rb"[\x00-\x1f\x7f]")


def _control_in(scope: Scope) -> str | None:
    """Which part ("path" or "query") holds a control character once decoded; None if neither."""
    if _CONTROL.search(scope["path"]):
        return "path"
    if _CONTROL_BYTES.search(unquote_to_bytes(scope.get("query_string", b""))):
        return "query"
    return None


def needs_leader(scope: Scope) -> bool:
    if not scope["path"].startswith("/v1/"):
        return False
    if scope["method"] in WRITE_METHODS or scope["path"] in LEADER_PATHS:
        return True
    if LOG_PATH.match(scope["path"]):
        return True
    return b"consistent=true" in scope.get("query_string", b"")


def follows_logs(scope: Scope) -> bool:
    """A GET of followed task logs (an endless stream)."""
    if scope["method"] != "GET" or not LOG_PATH.match(scope["path"]):
        return False
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    return any(v.strip().lower() in ("true", "1", "yes", "on") for v in query.get("follow", []))


def _raw_path(scope: Scope) -> bytes:
    """The path as the client sent it. ASGI servers give `raw_path` (uvicorn does); without it, the
    decoded path percent-encoded again (never the decoded bytes themselves)."""
    raw = scope.get("raw_path")
    if isinstance(raw, bytes) and raw:
        return raw
    return quote(scope["path"], safe="/:@!$&'()*+,;=-._~").encode("ascii")


class Front(Protocol):
    """What leader routing asks of the manager (warren.manager.control.cluster.Cluster)."""

    def is_leader(self) -> bool: ...

    def leader_api_addr(self) -> str | None:
        """The leader's API address; None while unknown."""

    def observe_request(self, method: str, route: str, code: int, seconds: float) -> None: ...

    def count_forwarded(self) -> None: ...


class LeaderRouting:
    def __init__(
        self,
        app: ASGIApp,
        *,
        front: Front,
        forwarder: Forwarder,
        max_body: int,
        retry_after_s: int,
    ) -> None:
        self.app = app
        self.front = front
        self.forwarder = forwarder
        self.max_body = max_body
        self.retry_after_s = retry_after_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self._route(scope, receive, send_status)
        finally:
            route = getattr(scope.get("route"), "path", None)
            label = route or ("forwarded" if scope.get("warren.forwarded") else "unmatched")
            self.front.observe_request(scope["method"], label, status, time.perf_counter() - start)

    async def _route(self, scope: Scope, receive: Receive, send: Send) -> None:
        where = _control_in(scope)
        if where is not None:
            # No name or parameter holds a control character; refused before anything reads them
            # (percent-encoded, they would be forwarded as such, never as a second request).
            message = f"invalid request {where}: it holds a control character (percent-encoded or not)"
            await error_response(400, "invalid", message)(scope, receive, send)
            return
        body = await self._read_body(receive)
        if body is None:
            message = f"request body larger than {self.max_body} bytes"
            await error_response(413, "too_large", message)(scope, receive, send)
            return
        if needs_leader(scope) and not self.front.is_leader():
            if follows_logs(scope):
                await self._redirect(scope, receive, send)
            else:
                await self._forward(scope, receive, body, send)
            return
        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _forward(self, scope: Scope, receive: Receive, body: bytes, send: Send) -> None:
        headers: list[tuple[bytes, bytes]] = list(scope["headers"])
        if any(k.lower() == FORWARDED_HEADER for k, _ in headers):
            await self._unavailable(
                scope, receive, send, "this manager is not the leader (request already forwarded once)"
            )
            return
        leader_addr = self.front.leader_api_addr()
        if leader_addr is None:
            await self._unavailable(
                scope, receive, send, "no leader: the cluster is electing one or has lost quorum"
            )
            return
        try:
            # The target exactly as the client sent it (raw_path is still percent-encoded; `path` is
            # decoded and must never be written back into a request), and every header checked,
            # before anything reaches the leader (warren.api.forwarder).
            target = request_target(_raw_path(scope), scope.get("query_string", b""))
            check_headers(headers)
            answer = await self.forwarder.forward(leader_addr, scope["method"], target, headers, body)
        except InvalidError as exc:
            await error_response(400, "invalid", str(exc))(scope, receive, send)
            return
        except UnavailableError as exc:
            await self._unavailable(scope, receive, send, str(exc))
            return
        self.front.count_forwarded()
        scope["warren.forwarded"] = True
        await send(
            {
                "type": "http.response.start",
                "status": answer.status,
                "headers": [*answer.headers, (b"content-length", str(len(answer.body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": answer.body})

    async def _redirect(self, scope: Scope, receive: Receive, send: Send) -> None:
        leader_addr = self.front.leader_api_addr()
        if leader_addr is None:
            await self._unavailable(
                scope, receive, send, "no leader: the cluster is electing one or has lost quorum"
            )
            return
        try:
            # As when forwarding: the target as sent, checked, never the decoded path (whose CR LF
            # would split this answer's head).
            target = request_target(_raw_path(scope), scope.get("query_string", b""))
        except InvalidError as exc:
            await error_response(400, "invalid", str(exc))(scope, receive, send)
            return
        location = f"https://{leader_addr}".encode() + target
        await send(
            {
                "type": "http.response.start",
                "status": 307,
                "headers": [(b"location", location), (b"content-length", b"0")],
            }
        )
        await send({"type": "http.response.body", "body": b""})

    async def _unavailable(self, scope: Scope, receive: Receive, send: Send, message: str) -> None:
        await error_response(503, "unavailable", message, self.retry_after_s)(scope, receive, send)

    async def _read_body(self, receive: Receive) -> bytes | None:
        """The whole request body, or None past max_body bytes: this is also the bound on a body a
        follower forwards to the leader (held in memory until the leader has answered)."""
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)
