"""The dashboard's server without a cluster: its guards (Host, token cookie, CSRF, allow-list, the static
route) and its proxying, against fake managers (httpx.MockTransport), through its ASGI app."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import httpx
import pytest

from warren.config import DashboardSettings
from warren.dashboard import guard
from warren.dashboard.app import DashboardApp, Site
from warren.dashboard.upstream import Upstream

# httpx wants cookies on the client; here each request says which session it has, or none.
pytestmark = pytest.mark.filterwarnings("ignore:Setting per-request cookies")

TOKEN = "t" * 43
SITE = Site("127.0.0.1", 8090)
HOST = "127.0.0.1:8090"
ORIGIN = "http://127.0.0.1:8090"
COOKIE = {SITE.cookie: TOKEN}
WRITE = {"X-Warren-Dashboard": "1", "Origin": ORIGIN}
Handler = Callable[[httpx.Request], httpx.Response]


class Managers:
    """Fake managers: what each one answers, and every request they saw."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.seen: list[httpx.Request] = []

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(request)
        return self.handler(request)


def ok(request: httpx.Request) -> httpx.Response:
    return httpx.Response(
        200,
        json={"path": request.url.path, "query": str(request.url.query, "ascii")},
        headers={"Set-Cookie": "evil=1"},
    )


def dashboard(
    handler: Handler = ok, bases: tuple[str, ...] = ("https://m1:8080",)
) -> tuple[httpx.AsyncClient, Managers]:
    managers = Managers(handler)
    upstream = Upstream(list(bases), None, DashboardSettings(), transport=httpx.MockTransport(managers))
    app = DashboardApp(upstream, TOKEN, SITE)
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=f"http://{HOST}")
    return client, managers


async def test_the_token_is_exchanged_for_a_strict_httponly_cookie_and_leaves_the_address() -> None:
    client, _ = dashboard()
    async with client:
        answer = await client.get(f"/?token={TOKEN}")
        assert answer.status_code == 303 and answer.headers["location"] == "/"
        cookie = answer.headers["set-cookie"]
        assert f"{SITE.cookie}={TOKEN}" in cookie
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie
        assert answer.headers["referrer-policy"] == "no-referrer"
        page = await client.get("/", cookies=COOKIE)
        assert page.status_code == 200 and b"<title>Warren dashboard</title>" in page.content
        assert "script-src 'self'" in page.headers["content-security-policy"]


async def test_without_the_token_there_is_no_page_and_no_api() -> None:
    client, managers = dashboard()
    async with client:
        assert (await client.get("/?token=wrong")).status_code == 403
        assert (await client.get("/")).status_code == 401
        assert (await client.get("/", cookies={SITE.cookie: "x" * 43})).status_code == 401
        assert (await client.get("/api/v1/cluster")).status_code == 401
        # A cookie of another dashboard (another port of the same host) is not this one's.
        assert (
            await client.get("/api/v1/cluster", cookies={"warren_dashboard_9000": TOKEN})
        ).status_code == 401
    assert managers.seen == []


@pytest.mark.parametrize(
    "host", ["evil.example:8090", "127.0.0.1:9999", "127.0.0.1", "attacker.localhost:8090"]
)
async def test_a_foreign_host_header_is_refused_dns_rebinding(host: str) -> None:
    client, managers = dashboard()
    async with client:
        answer = await client.get("/api/v1/cluster", cookies=COOKIE, headers={"Host": host})
        assert answer.status_code == 421
        assert (await client.get(f"/?token={TOKEN}", headers={"Host": host})).status_code == 421
    assert managers.seen == []


async def test_localhost_with_the_port_is_the_same_dashboard() -> None:
    client, managers = dashboard()
    async with client:
        answer = await client.get("/api/v1/cluster", cookies=COOKIE, headers={"Host": "localhost:8090"})
    assert answer.status_code == 200 and len(managers.seen) == 1


async def test_reads_are_proxied_with_their_query_and_without_the_managers_cookies() -> None:
    client, managers = dashboard()
    async with client:
        answer = await client.get("/api/v1/services/web/tasks?consistent=true", cookies=COOKIE)
    assert answer.status_code == 200
    assert answer.json() == {"path": "/v1/services/web/tasks", "query": "consistent=true"}
    assert "set-cookie" not in answer.headers
    assert [str(r.url) for r in managers.seen] == ["https://m1:8080/v1/services/web/tasks?consistent=true"]


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/cluster/join-tokens",
        "/api/v1/secrets",
        "/api/v1/secrets/db",
        "/api/v1/cluster/backup",
        "/api/v1/configs/app",
        "/api/v1/services/web/logs",
        "/api/../v1/cluster/join-tokens",
        "/api/v1/services/..%2fcluster/backup",
        "/api/v1/services/%2e%2e/secrets",
        "/api/v1/services/web/../../secrets",
        "/api/v1//cluster",
        "/api/v1/services/.hidden",
        "/api/v1/cluster/",
        "/api/v1/ca",
    ],
)
async def test_only_the_pages_calls_are_proxied(path: str) -> None:
    client, managers = dashboard()
    async with client:
        # httpx would normalise the dot segments: the raw path goes as it is written
        request = client.build_request("GET", "http://" + HOST + "/", cookies=COOKIE)
        request.url = request.url.copy_with(raw_path=path.encode("ascii"))
        answer = await client.send(request)
    assert answer.status_code in (400, 404, 405), answer.text
    assert managers.seen == []


@pytest.mark.parametrize(
    "query", ["since=1&follow=true&x=1", "consistent=true&consistent=false", "since=a%0d%0ab"]
)
async def test_unexpected_query_parameters_are_refused(query: str) -> None:
    client, managers = dashboard()
    async with client:
        answer = await client.get(f"/api/v1/events?{query}", cookies=COOKIE)
    assert answer.status_code == 400 and managers.seen == []


async def test_a_scale_needs_the_csrf_header_and_the_dashboards_origin() -> None:
    client, managers = dashboard()
    body = {"replicas": 3}
    async with client:
        assert (await client.patch("/api/v1/services/web", json=body, cookies=COOKIE)).status_code == 403
        no_origin = {"X-Warren-Dashboard": "1"}
        assert (
            await client.patch("/api/v1/services/web", json=body, cookies=COOKIE, headers=no_origin)
        ).status_code == 403
        foreign = {"X-Warren-Dashboard": "1", "Origin": "http://evil.example"}
        assert (
            await client.patch("/api/v1/services/web", json=body, cookies=COOKIE, headers=foreign)
        ).status_code == 403
        assert managers.seen == []
        answer = await client.patch("/api/v1/services/web", json=body, cookies=COOKIE, headers=WRITE)
    assert answer.status_code == 200
    assert managers.seen[0].method == "PATCH" and managers.seen[0].content == b'{"replicas":3}'


@pytest.mark.parametrize(
    "body",
    [
        b'{"replicas": 3, "image": "evil"}',
        b'{"image": "evil"}',
        b'{"replicas": -1}',
        b'{"replicas": 1.5}',
        b'{"replicas": true}',
        b"[3]",
        b"not json",
        b'{"replicas": 10001}',
    ],
)
async def test_a_patch_changes_the_replica_count_and_nothing_else(body: bytes) -> None:
    client, managers = dashboard()
    async with client:
        answer = await client.patch("/api/v1/services/web", content=body, cookies=COOKIE, headers=WRITE)
    assert answer.status_code == 400 and managers.seen == []


async def test_a_large_body_is_refused_before_it_is_read_whole() -> None:
    client, managers = dashboard()
    async with client:
        answer = await client.patch(
            "/api/v1/services/web", content=b" " * 5000 + b'{"replicas":1}', cookies=COOKIE, headers=WRITE
        )
    assert answer.status_code == 413 and managers.seen == []


async def test_rollback_is_proxied_and_remove_is_not() -> None:
    client, managers = dashboard()
    async with client:
        assert (
            await client.post("/api/v1/services/web/rollback", cookies=COOKIE, headers=WRITE)
        ).status_code == 200
        assert (await client.delete("/api/v1/services/web", cookies=COOKIE, headers=WRITE)).status_code == 405
        assert (
            await client.post("/api/v1/services", json={}, cookies=COOKIE, headers=WRITE)
        ).status_code == 405
    assert [(r.method, r.url.path) for r in managers.seen] == [("POST", "/v1/services/web/rollback")]


async def test_a_failed_manager_is_skipped_for_the_next_one() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == "m1":
            raise httpx.ConnectError("refused")
        if request.url.host == "m2":
            return httpx.Response(503, json={"error": "unavailable", "message": "no leader"})
        return ok(request)

    client, managers = dashboard(handler, ("https://m1:8080", "https://m2:8080", "https://m3:8080"))
    async with client:
        answer = await client.get("/api/v1/cluster", cookies=COOKIE)
        assert answer.status_code == 200
        again = await client.get("/api/v1/nodes", cookies=COOKIE)  # m3 answered: it goes first now
    assert again.status_code == 200
    assert [r.url.host for r in managers.seen] == ["m1", "m2", "m3", "m3"]


async def test_no_manager_answering_is_a_502_that_says_why() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused")

    client, _ = dashboard(handler, ("https://m1:8080", "https://m2:8080"))
    async with client:
        answer = await client.get("/api/v1/cluster", cookies=COOKIE)
    assert answer.status_code == 502
    assert "m1:8080" in answer.json()["message"] and "m2:8080" in answer.json()["message"]


async def test_a_write_that_may_have_reached_a_manager_is_not_sent_again() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow")

    client, managers = dashboard(handler, ("https://m1:8080", "https://m2:8080"))
    async with client:
        answer = await client.post("/api/v1/services/web/rollback", cookies=COOKIE, headers=WRITE)
    assert answer.status_code == 502 and len(managers.seen) == 1


async def test_the_event_stream_passes_through_with_last_event_id() -> None:
    async def events() -> AsyncIterator[bytes]:
        yield b'id: 7\nevent: leader\ndata: {"id": 7}\n\n'
        yield b": keep-alive\n\n"

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"Content-Type": "text/event-stream"}, content=events())

    client, managers = dashboard(handler)
    async with client:
        async with client.stream(
            "GET", "/api/v1/events?follow=true&since=0.0", cookies=COOKIE, headers={"Last-Event-ID": "6.0"}
        ) as answer:
            assert answer.status_code == 200
            assert answer.headers["content-type"].startswith("text/event-stream")
            body = b"".join([chunk async for chunk in answer.aiter_raw()])
    assert body == b'id: 7\nevent: leader\ndata: {"id": 7}\n\n: keep-alive\n\n'
    # A resuming EventSource repeats its URL's since: the id it saw last wins.
    assert managers.seen[0].headers["last-event-id"] == "6.0"
    assert managers.seen[0].url.params.get("since") is None


async def test_a_stream_without_last_event_id_keeps_its_since_and_drops_an_odd_one() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"Content-Type": "text/event-stream"}, content=b"")

    client, managers = dashboard(handler)
    async with client:
        await client.get("/api/v1/events?follow=true&since=10m", cookies=COOKIE)
        await client.get(
            "/api/v1/events?follow=true&since=10m", cookies=COOKIE, headers={"Last-Event-ID": "../x y"}
        )
    assert [r.url.params.get("since") for r in managers.seen] == ["10m", "10m"]
    assert ["last-event-id" in r.headers for r in managers.seen] == [False, False]


@pytest.mark.parametrize(
    "path",
    [
        "/static/../app.py",
        "/static/..%2fapp.py",
        "/static/%2e%2e/guard.py",
        "/static/",
        "/static/nothere.js",
        "/static//etc/passwd",
        "/app.py",
    ],
)
async def test_the_static_route_serves_its_own_files_only(path: str) -> None:
    client, _ = dashboard()
    async with client:
        request = client.build_request("GET", "http://" + HOST + "/")
        request.url = request.url.copy_with(raw_path=path.encode("ascii"))
        answer = await client.send(request)
    assert answer.status_code == 404


@pytest.mark.parametrize(
    ("name", "kind"), [("app.js", "text/javascript"), ("style.css", "text/css"), ("index.html", "text/html")]
)
async def test_static_files_have_their_content_types(name: str, kind: str) -> None:
    client, _ = dashboard()
    async with client:
        answer = await client.get(f"/static/{name}")
    assert answer.status_code == 200 and answer.headers["content-type"].startswith(kind)
    assert answer.headers["x-content-type-options"] == "nosniff"


def test_allowed_hosts_of_a_remote_bind_are_that_address_only() -> None:
    assert guard.allowed_hosts("10.0.0.5", 8090) == frozenset({"10.0.0.5:8090"})
    assert guard.allowed_hosts("::1", 8090) == frozenset({"[::1]:8090", "localhost:8090"})


async def test_an_answer_is_always_json_to_the_browser_whatever_a_manager_claims() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200, content=b"<script>alert(1)</script>", headers={"Content-Type": "text/html"}
        )

    client, _ = dashboard(handler)
    async with client:
        answer = await client.get("/api/v1/cluster", cookies=COOKIE)
    assert answer.headers["content-type"] == "application/json"
    assert answer.headers["x-content-type-options"] == "nosniff"


async def test_a_followed_stream_that_is_not_an_event_stream_is_refused() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=b"<html>", headers={"Content-Type": "text/html"})

    client, _ = dashboard(handler)
    async with client:
        answer = await client.get("/api/v1/events?follow=true", cookies=COOKIE)
    assert answer.status_code == 502
