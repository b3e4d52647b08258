"""What the dashboard's server lets through: its security, read as an attacker would (docs/dashboard.md).

The server holds this user's admin certificate, so anything that can make it send a request can act
on the cluster. The attackers considered: a web page open in the same browser (cross-site requests,
CSRF), a web page that rebinds its DNS name to 127.0.0.1 (DNS rebinding: same origin in the browser's
eyes, wrong Host header), and another local user (can connect to 127.0.0.1, cannot read the token).

    Host        every request names the bound address or localhost with the port
    token       a random per-run token, printed in the URL, exchanged for an HttpOnly SameSite=Strict
                cookie; every /api request needs the cookie
    CSRF        a non-GET request also needs the header X-Warren-Dashboard: 1 (a cross-site form or
                simple request cannot set it) and an Origin of the dashboard itself
    allow-list  only the API calls the pages make (reads, scale, rollback, events), matched on the
                raw path: no percent-escapes, no dot segments, names in the API's own alphabet
"""

from __future__ import annotations

import hmac
import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass

from warren.errors import WarrenError
from warren.formats import join_host_port

CSRF_HEADER = "x-warren-dashboard"
# A service, node or task name as the API spells it (warren.spec: letters, digits, '.', '_', '-', not
# starting with a punctuation mark), so a path segment can never be '.' or '..'.
_NAME = r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}"
# The query parameters' values the pages send: ids, durations, booleans.
_QUERY_VALUE = re.compile(r"[A-Za-z0-9._:-]{0,64}")


@dataclass(frozen=True, slots=True)
class Route:
    """One API call the dashboard proxies."""

    method: str
    pattern: re.Pattern[str]
    query: frozenset[str] = frozenset()
    # A scale: the body must be {"replicas": N} and nothing else.
    body: str | None = None
    # With follow=true, answered as a stream (Server-Sent Events), passed through as it comes.
    stream: bool = False


def _route(method: str, path: str, query: tuple[str, ...] = (), body: str | None = None,
           stream: bool = False) -> Route:
    return Route(method, re.compile(path.replace("{name}", _NAME)), frozenset(query), body, stream)


_READ = ("consistent",)
ROUTES: tuple[Route, ...] = (
    _route("GET", "/v1/health"),
    _route("GET", "/v1/ready"),
    _route("GET", "/v1/cluster", _READ),
    _route("GET", "/v1/nodes", _READ),
    _route("GET", "/v1/nodes/{name}", _READ),
    _route("GET", "/v1/services", _READ),
    _route("GET", "/v1/services/{name}", _READ),
    _route("GET", "/v1/services/{name}/tasks", _READ),
    _route("GET", "/v1/tasks", (*_READ, "service", "node")),
    _route("GET", "/v1/events", ("since", "follow"), stream=True),
    _route("PATCH", "/v1/services/{name}", body="scale"),
    _route("POST", "/v1/services/{name}/rollback"),
)


class Refused(WarrenError):
    """A request the dashboard does not pass on: its HTTP status and a one-line reason."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def allowed_hosts(bind: str, port: int) -> frozenset[str]:
    """The Host headers the server answers: the bound address with its port, and localhost on a
    loopback bind (a rebinding attacker's name is never among them)."""
    hosts = {join_host_port(bind, port).lower()}
    if is_loopback(bind):
        hosts.add(f"localhost:{port}")
    return frozenset(hosts)


def check_host(host: str | None, allowed: frozenset[str]) -> None:
    if host is None or host.lower() not in allowed:
        raise Refused(421, "this dashboard answers only to its own address (Host header)")


def token_matches(given: str | None, token: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode("utf-8", "replace"), token.encode("ascii"))


def check_csrf(method: str, headers: Mapping[str, str], origin: str) -> None:
    """A write needs the dashboard's header and its own Origin: a page elsewhere can send neither."""
    if method in ("GET", "HEAD"):
        return
    if headers.get(CSRF_HEADER) != "1":
        raise Refused(403, f"a change needs the header {CSRF_HEADER}: 1")
    if headers.get("origin") != origin:
        raise Refused(403, "a change must come from the dashboard's own page (Origin)")


def match(method: str, raw_path: str) -> Route:
    """The allowed route for `method` and the raw (undecoded) path under /api, or Refused."""
    if "%" in raw_path or "\\" in raw_path or "//" in raw_path or "/." in raw_path:
        raise Refused(400, "the path has escapes or dot segments")
    for route in ROUTES:
        if route.pattern.fullmatch(raw_path):
            if route.method == method:
                return route
    if any(route.pattern.fullmatch(raw_path) for route in ROUTES):
        raise Refused(405, f"{method} {raw_path} is not something the dashboard does")
    raise Refused(404, f"{raw_path} is not proxied by the dashboard")


def query_of(route: Route, pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The query passed on: only the route's parameters, each once, with plain values."""
    seen: set[str] = set()
    for key, value in pairs:
        if key not in route.query:
            raise Refused(400, f"query parameter {key!r} is not allowed here")
        if key in seen:
            raise Refused(400, f"query parameter {key!r} given twice")
        if not _QUERY_VALUE.fullmatch(value):
            raise Refused(400, f"query parameter {key!r} has an unexpected value")
        seen.add(key)
    return pairs


def is_stream(route: Route, pairs: list[tuple[str, str]]) -> bool:
    """A following events request: its answer is passed through as it comes, never read whole."""
    return route.stream and ("follow", "true") in pairs


def last_event_id(value: str | None) -> str | None:
    """The Last-Event-ID an EventSource sent, if it is a plain id (anything else is dropped)."""
    if value is None or value == "" or not _QUERY_VALUE.fullmatch(value):
        return None
    return value


def scale_body(raw: bytes, max_replicas: int) -> bytes:
    """The body of a scale, checked: exactly {"replicas": N}; the bytes to send on."""
    import orjson

    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise Refused(400, "the body is not JSON") from None
    if not isinstance(body, dict) or set(body) != {"replicas"}:
        raise Refused(400, 'the dashboard changes only the replica count: {"replicas": N}')
    replicas = body["replicas"]
    if type(replicas) is not int or not 0 <= replicas <= max_replicas:
        raise Refused(400, f"replicas must be an integer from 0 to {max_replicas}")
    return orjson.dumps({"replicas": replicas})
