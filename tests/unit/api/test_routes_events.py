"""GET /v1/events over a ring in one process: the JSON answer, `since` (id or duration) and what was
lost, the filters, bad queries, the SSE framing of a followed stream; and the followed stream itself
(live events, keep-alives, a slow reader's overflow, the end when the manager stops)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from fastapi import FastAPI
from starlette.testclient import TestClient

from warren.api import routes_events, routing
from warren.api.app import add_error_handlers
from warren.api.responses import JSON
from warren.config import EventSettings
from warren.manager.control.events import Events
from warren.store import events as ev

T0 = 1_800_000_000.0


def task(index: int, service: str = "web", node: str = "w1", ordinal: int = 0, at: float = T0) -> ev.Event:
    attrs: dict[str, Any] = {"service": service, "slot": 1, "node": node, "from": "assigned", "to": "running"}
    return ev.Event(index, ordinal, at, "task", "state", f"t{index}", attrs, f"task t{index} running")


def node_event(index: int, name: str) -> ev.Event:
    return ev.Event(index, 0, T0, "node", "down", name, {}, f"node {name} is down")


def make(max_events: int = 100, **settings: Any) -> tuple[ev.EventRing, Events]:
    ring = ev.EventRing(max_events=max_events, max_age_s=1e9, clock=lambda: T0 + 10)
    return ring, Events(ring, EventSettings(**settings), clock=lambda: T0 + 10)


@pytest.fixture
def world() -> Iterator[tuple[TestClient, ev.EventRing]]:
    ring, events = make(max_events=5)
    app = FastAPI(default_response_class=JSON)
    add_error_handlers(app)
    routes_events.add_routes(app, events)
    with TestClient(app) as client:
        yield client, ring


def test_the_answer_holds_the_events_and_the_bounds(world: tuple[TestClient, ev.EventRing]) -> None:
    client, ring = world
    assert client.get("/v1/events").json() == {"events": [], "first": None, "last": None, "lost": None}
    ring.publish([task(1), task(2), node_event(3, "w2")])
    body = client.get("/v1/events").json()
    assert [e["id"] for e in body["events"]] == ["1.0", "2.0", "3.0"]
    assert (body["first"], body["last"], body["lost"]) == ("1.0", "3.0", None)
    assert body["events"][0] == {
        "id": "1.0", "time": T0, "type": "task", "action": "state", "actor": "t1",
        "attributes": {"service": "web", "slot": 1, "node": "w1", "from": "assigned", "to": "running"},
        "message": "task t1 running",
    }
    assert [e["id"] for e in client.get("/v1/events?since=1.0").json()["events"]] == ["2.0", "3.0"]
    assert [e["id"] for e in client.get("/v1/events?since=1.0&limit=1").json()["events"]] == ["2.0"]
    # Without since: the newest `limit`.
    assert [e["id"] for e in client.get("/v1/events?limit=1").json()["events"]] == ["3.0"]


def test_since_before_what_is_held_says_what_was_lost(world: tuple[TestClient, ev.EventRing]) -> None:
    client, ring = world
    ring.publish([task(i) for i in range(1, 9)])  # holds 5: 4..8
    body = client.get("/v1/events?since=2.0").json()
    assert [e["id"] for e in body["events"]] == ["4.0", "5.0", "6.0", "7.0", "8.0"]
    assert body["lost"]["after"] == "2.0" and body["lost"]["before"] == "4.0" and body["lost"]["message"]
    assert client.get("/v1/events?since=3.0").json()["lost"] is None
    # Last-Event-ID stands for since.
    body = client.get("/v1/events", headers={"Last-Event-ID": "6.0"}).json()
    assert [e["id"] for e in body["events"]] == ["7.0", "8.0"]
    # Before the query's: an EventSource reconnects with its first URL and the last id it got.
    body = client.get("/v1/events?since=4.0", headers={"Last-Event-ID": "7.0"}).json()
    assert [e["id"] for e in body["events"]] == ["8.0"]


def test_since_a_duration(world: tuple[TestClient, ev.EventRing]) -> None:
    client, ring = world
    ring.publish([task(1, at=T0 - 3600), task(2, at=T0 + 5)])
    assert [e["id"] for e in client.get("/v1/events?since=10m").json()["events"]] == ["2.0"]
    assert [e["id"] for e in client.get("/v1/events?since=2h").json()["events"]] == ["1.0", "2.0"]
    assert client.get("/v1/events?since=1s").json()["events"] == []


def test_filters_and_within_or_between_keys(world: tuple[TestClient, ev.EventRing]) -> None:
    client, ring = world
    ring.publish([task(1, "web", "w1"), task(2, "db", "w2"), node_event(3, "w1"), task(4, "web", "w2")])

    def ids(query: str) -> list[str]:
        answer = client.get(f"/v1/events?{query}")
        assert answer.status_code == 200, answer.text
        return [e["id"] for e in answer.json()["events"]]

    assert ids("type=node") == ["3.0"]
    assert ids("type=node,task") == ids("type=node&type=task") == ["1.0", "2.0", "3.0", "4.0"]
    assert ids("service=web") == ["1.0", "4.0"]
    assert ids("node=w1") == ["1.0", "3.0"]
    assert ids("service=web&node=w2") == ["4.0"]
    assert ids("task=t2,t4") == ["2.0", "4.0"]


@pytest.mark.parametrize(
    ("query", "words"),
    [
        ("since=yesterday", "neither an event id"),
        ("since=10y", "neither an event id"),
        ("type=nope", "unknown event type 'nope'"),
        ("service=a%20b", "not a name or id"),
        ("limit=0", "limit"),
        ("limit=100000", "between 1 and 10000"),
    ],
)
def test_a_bad_query_is_refused_clearly(
    world: tuple[TestClient, ev.EventRing], query: str, words: str
) -> None:
    client, _ = world
    answer = client.get(f"/v1/events?{query}")
    assert answer.status_code == 400 and answer.json()["error"] == "invalid"
    assert words in answer.json()["message"]


def test_a_followed_stream_is_server_sent_events(world: tuple[TestClient, ev.EventRing]) -> None:
    client, ring = world
    ring.publish([task(i) for i in range(1, 8)])  # holds 3..7
    ring.close()  # a stopping manager: the stream sends what is held, then ends
    with client.stream("GET", "/v1/events?since=1.0&follow=true&type=task") as answer:
        assert answer.headers["content-type"].startswith("text/event-stream")
        assert answer.headers["cache-control"] == "no-cache"
        text = b"".join(answer.iter_bytes()).decode()
    messages = text.split("\n\n")
    assert messages[0] == "retry: 1000"
    assert messages[1].startswith("event: gap\ndata: ")
    gap = orjson.loads(messages[1].split("data: ", 1)[1])
    assert gap["after"] == "1.0" and gap["before"] == "3.0"
    lines = messages[2].split("\n")
    assert lines[:2] == ["id: 3.0", "event: task"]
    assert orjson.loads(lines[2].removeprefix("data: "))["id"] == "3.0"
    assert [m.split("\n")[0] for m in messages[2:7]] == [f"id: {i}.0" for i in range(3, 8)]
    # The Accept header asks for the stream too.
    with client.stream("GET", "/v1/events", headers={"Accept": "text/event-stream"}) as answer:
        assert answer.headers["content-type"].startswith("text/event-stream")


def test_frames() -> None:
    assert routes_events.frame("keepalive", None) == b": keep-alive\n\n"
    assert routes_events.frame("overflow", {"after": "1.0", "message": "m\nx"}) == (
        b'event: overflow\ndata: {"after":"1.0","message":"m\\nx"}\n\n'
    )


# -- the followed stream, live ----------------------------------------------------------------------


async def take(stream: Any, n: int) -> list[tuple[str, Any]]:
    got = []
    async with asyncio.timeout(5):
        while len(got) < n:
            got.append(await anext(stream))
    return got


def test_live_events_follow_the_held_ones_without_duplicates() -> None:
    async def main() -> None:
        ring, events = make()
        ring.publish([task(1), task(2)])
        stream = events.follow(events.query(since="1.0"))
        first = await take(stream, 1)
        ring.publish([task(2), task(3), node_event(4, "w1")])  # 2 again (a duplicate): skipped
        got = first + await take(stream, 2)
        assert [(k, e.id) for k, e in got] == [("event", "2.0"), ("event", "3.0"), ("event", "4.0")]
        await stream.aclose()
        assert ring.subscribers == 0

    asyncio.run(main())


def test_an_idle_stream_sends_keepalives() -> None:
    async def main() -> None:
        ring, events = make(keepalive_s=0.01)
        stream = events.follow(events.query())
        assert await take(stream, 2) == [("keepalive", None), ("keepalive", None)]
        await stream.aclose()

    asyncio.run(main())


def test_a_slow_reader_overflows_and_the_stream_ends() -> None:
    async def main() -> None:
        ring, events = make(max_events=10_000, stream_queue=10)
        ring.publish([task(1)])
        stream = events.follow(events.query())
        assert [e.id for _, e in await take(stream, 1)] == ["1.0"]
        ring.publish([task(i) for i in range(2, 100)])  # the reader reads nothing meanwhile
        kind, body = await anext(stream)
        assert kind == "overflow" and body["after"] == "1.0" and "resume from 1.0" in body["message"]
        with pytest.raises(StopAsyncIteration):
            await anext(stream)
        assert ring.subscribers == 0

    asyncio.run(main())


def test_streams_end_when_the_manager_stops() -> None:
    async def main() -> None:
        ring, events = make()
        streams = [events.follow(events.query()) for _ in range(50)]
        waiting = [asyncio.ensure_future(anext(s)) for s in streams]
        await asyncio.sleep(0.01)
        assert ring.subscribers == 50
        ring.close()
        done = await asyncio.gather(*waiting, return_exceptions=True)
        assert all(isinstance(d, StopAsyncIteration) for d in done)
        assert ring.subscribers == 0

    asyncio.run(main())


def test_a_reset_ring_reports_a_gap_to_live_readers() -> None:
    async def main() -> None:
        ring, events = make()
        ring.publish([task(1)])
        stream = events.follow(events.query())
        await take(stream, 1)
        ring.reset(50)
        ring.publish([task(51)])
        got = await take(stream, 2)
        assert got[0][0] == "gap" and got[0][1]["after"] == "1.0"
        assert got[1][0] == "event" and got[1][1].id == "51.0"
        await stream.aclose()

    asyncio.run(main())


@pytest.mark.parametrize("query", [b"", b"follow=true", b"since=10m&type=task"])
def test_events_are_served_by_the_manager_asked(query: bytes) -> None:
    scope = {"path": "/v1/events", "method": "GET", "query_string": query}
    assert not routing.needs_leader(scope) and not routing.follows_logs(scope)
