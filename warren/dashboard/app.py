"""The dashboard's web server as an ASGI app: the static pages, the token exchange, and /api/v1/...
proxied to the managers through warren.dashboard.guard's checks (docs/dashboard.md).

    GET /?token=T     sets the session cookie (HttpOnly, SameSite=Strict) and redirects to /
    GET /             the page (index.html), with the cookie; otherwise a page saying how to get in
    GET /static/F     the page's files (a fixed set read at start; no path is ever joined)
    /api/v1/...       the allowed API calls, with the cookie (and, for writes, the CSRF header)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from importlib import resources
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from warren.dashboard import guard
from warren.dashboard.upstream import AllFailed, Upstream
from warren.formats import join_host_port
from warren.spec.service import MAX_REPLICAS

log = logging.getLogger(__name__)

_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
# No script, style or connection from elsewhere; no framing (clickjacking); the token in the URL is
# never sent on as a Referer.
_SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}

_LOCKED_PAGE = b"""<!doctype html><html lang="en"><meta charset="utf-8"><title>Warren dashboard</title>
<p>Open the address <code>warren dashboard</code> printed (it carries this run's token).</p></html>"""


def static_files() -> dict[str, tuple[bytes, str]]:
    """The page's files by name, read once from the package (they ship in the wheel)."""
    files: dict[str, tuple[bytes, str]] = {}
    for entry in resources.files("warren.dashboard").joinpath("static").iterdir():
        suffix = "." + entry.name.rsplit(".", 1)[-1] if "." in entry.name else ""
        if entry.is_file() and suffix in _TYPES:
            files[entry.name] = (entry.read_bytes(), _TYPES[suffix])
    return files


@dataclass(frozen=True, slots=True)
class Site:
    """Where the server is reached: the allowed Host headers, its Origin, and the cookie's name (per
    port: cookies are shared by every port of a host)."""

    bind: str
    port: int

    @property
    def origin(self) -> str:
        return f"http://{join_host_port(self.bind, self.port)}"

    @property
    def cookie(self) -> str:
        return f"warren_dashboard_{self.port}"


class DashboardApp:
    def __init__(self, upstream: Upstream, token: str, site: Site) -> None:
        self.upstream = upstream
        self.token = token
        self.site = site
        self.hosts = guard.allowed_hosts(site.bind, site.port)
        self.files = static_files()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        request = Request(scope, receive)
        try:
            guard.check_host(request.headers.get("host"), self.hosts)
            response = await self._route(request)
        except guard.Refused as refused:
            response = _error(refused.status, "refused", refused.reason)
        for name, value in _SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        await response(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.upstream.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _route(self, request: Request) -> Response:
        raw = request.scope.get("raw_path") or request.scope["path"].encode("latin-1")
        path = raw.decode("latin-1")
        if path.startswith("/api/"):
            return await self._api(request, path[len("/api"):])
        if request.method not in ("GET", "HEAD"):
            raise guard.Refused(405, "only the API takes changes")
        if path == "/":
            return self._index(request)
        if path.startswith("/static/"):
            found = self.files.get(path[len("/static/"):])
            if found is None:
                raise guard.Refused(404, "no such file")
            return Response(found[0], media_type=found[1])
        raise guard.Refused(404, "no such page")

    def _index(self, request: Request) -> Response:
        given = request.query_params.get("token")
        if given is not None:
            if not guard.token_matches(given, self.token):
                raise guard.Refused(403, "wrong token: use the address `warren dashboard` printed last")
            # The token leaves the address bar (and the history) at once; the cookie carries it on.
            response: Response = RedirectResponse("/", status_code=303)
            response.set_cookie(self.site.cookie, self.token, httponly=True, samesite="strict", path="/")
            return response
        if not guard.token_matches(request.cookies.get(self.site.cookie), self.token):
            return Response(_LOCKED_PAGE, status_code=401, media_type=_TYPES[".html"])
        return Response(self.files["index.html"][0], media_type=_TYPES[".html"])

    async def _api(self, request: Request, path: str) -> Response:
        if not guard.token_matches(request.cookies.get(self.site.cookie), self.token):
            raise guard.Refused(401, "no dashboard session: open the address `warren dashboard` printed")
        guard.check_csrf(request.method, request.headers, self.site.origin)
        route = guard.match(request.method, path)
        query = guard.query_of(route, parse_qsl(request.url.query, keep_blank_values=True))
        body: bytes | None = None
        if route.body == "scale":
            raw = await _body(request, self.upstream.settings.max_body_bytes)
            body = guard.scale_body(raw, MAX_REPLICAS)
        try:
            if guard.is_stream(route, query):
                # A reconnecting EventSource repeats its URL's `since`; the id it saw last is newer.
                last_id = guard.last_event_id(request.headers.get("last-event-id"))
                if last_id is not None:
                    query = [(k, v) for k, v in query if k != "since"]
                status, headers, chunks = await self.upstream.stream(path, query, last_id)
                if status == 200 and not headers.get("content-type", "").startswith("text/event-stream"):
                    await chunks.aclose()
                    return _error(502, "unavailable", "the manager's event stream is not an event stream")
                # No buffering anywhere on the way: each event reaches the page as the manager sends it.
                headers["X-Accel-Buffering"] = "no"
                return StreamingResponse(chunks, status_code=status, headers=headers)
            answer = await self.upstream.request(request.method, path, query, body)
        except AllFailed as exc:
            return _error(502, "unavailable", str(exc))
        # Every proxied call answers JSON: whatever type a manager claims, the browser is told JSON, so
        # no answer can become a page or a script of the dashboard's origin.
        headers = {**answer.headers, "content-type": "application/json"}
        return Response(answer.body, status_code=answer.status, headers=headers)


async def _body(request: Request, limit: int) -> bytes:
    parts: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise guard.Refused(413, f"the body is larger than {limit} bytes")
        parts.append(chunk)
    return b"".join(parts)


def _error(status: int, error: str, message: str) -> Response:
    body: dict[str, Any] = {"error": error, "message": message}
    return JSONResponse(body, status_code=status)
