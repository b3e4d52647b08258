"""The Docker runtime's engine-side helpers and its reconnecting event feed, with fake streams."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from warren.runtime.base import TaskRun
from warren.runtime.docker import container_name
from warren.runtime.engine import explain, parse_time, split_image
from warren.runtime.events import EventFeed
from warren.testing.wait import eventually_async


@pytest.mark.parametrize(
    ("image", "parts"),
    [
        ("busybox", ("busybox", None)),
        ("busybox:1.36", ("busybox", "1.36")),
        ("registry:5000/team/app", ("registry:5000/team/app", None)),
        ("registry:5000/team/app:2", ("registry:5000/team/app", "2")),
        ("app@sha256:abcd", ("app", "sha256:abcd")),
    ],
)
def test_image_references(image: str, parts: tuple[str, str | None]) -> None:
    assert split_image(image) == parts


def test_engine_timestamps() -> None:
    assert parse_time("2024-05-01T12:00:00Z") == 1714564800.0
    assert parse_time("2024-05-01T12:00:00.25Z") == 1714564800.25
    assert parse_time("2024-05-01T12:00:00.123456789Z") == pytest.approx(1714564800.123456789)
    assert parse_time("2024-05-01T14:00:00.5+02:00") == 1714564800.5
    assert parse_time("0001-01-01T00:00:00Z") is None  # Docker's "never started"
    assert parse_time("") is None
    assert parse_time(None) is None
    assert parse_time("yesterday") is None


def test_engine_errors_are_told_in_the_engines_words() -> None:
    class Fake(Exception):
        explanation = b"Bind for 0.0.0.0:8080 failed: port is already allocated"

    assert explain(Fake("500 Server Error")) == "Bind for 0.0.0.0:8080 failed: port is already allocated"
    assert explain(ValueError(" plain ")) == "plain"


def run(task_id: str, slot: int | None, service: str = "web") -> TaskRun:
    return TaskRun(task_id, "svc-1", service, slot, "busybox", None, {})


def test_container_names() -> None:
    assert container_name(run("t1", 3), "worker-1") == "warren-web.3.t1"
    assert container_name(run("t1", None), "worker-1") == "warren-web.worker-1.t1"
    assert container_name(run("t/1", None), "node a") == "warren-web.node_a.t_1"


class FakeStream:
    """Yields the events put into it until it is closed or `end()`ed (what an engine restart does)."""

    def __init__(self) -> None:
        self._events: list[dict[str, Any] | None] = []
        self._cond = threading.Condition()
        self.closed = False

    def put(self, event: dict[str, Any] | None) -> None:
        with self._cond:
            self._events.append(event)
            self._cond.notify()

    def end(self) -> None:
        self.put(None)

    def close(self) -> None:
        self.closed = True
        self.end()

    def __iter__(self) -> Iterator[dict[str, Any]]:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: bool(self._events))
                event = self._events.pop(0)
            if event is None:
                return
            yield event


class Engine:
    """Hands out FakeStreams; refuses (ConnectionError) while `up` is clear."""

    def __init__(self) -> None:
        self.up = threading.Event()
        self.up.set()
        self.streams: list[FakeStream] = []
        self.opened_since: list[int | None] = []
        self.refused = 0

    def open(self, since: int | None) -> FakeStream:
        if not self.up.is_set():
            self.refused += 1
            raise ConnectionError("engine down")
        stream = FakeStream()
        self.opened_since.append(since)
        self.streams.append(stream)
        return stream


async def test_feed_reconnects_and_announces_every_connection() -> None:
    engine = Engine()
    events: list[dict[str, Any]] = []
    connects: list[int] = []
    feed = EventFeed(
        engine.open,
        on_event=events.append,
        on_connect=lambda: connects.append(len(events)),
        unreachable=(ConnectionError,),
        retry_initial_s=0.01,
        retry_max_s=0.05,
        name="test-feed",
    )
    feed.start(asyncio.get_running_loop())
    try:
        await eventually_async(lambda: len(engine.streams) == 1, 5.0, "the first stream")
        engine.streams[0].put({"id": "a", "time": 100})
        await eventually_async(lambda: len(events) == 1, 5.0, "the first event")

        # The engine restarts: the stream ends and the engine refuses for a while.
        engine.up.clear()
        engine.streams[0].end()
        await eventually_async(lambda: engine.refused >= 3, 5.0, "refused reconnects")
        assert len(engine.streams) == 1
        engine.up.set()
        await eventually_async(lambda: len(engine.streams) == 2, 5.0, "a new stream")
        engine.streams[1].put({"id": "b", "time": 101})
        await eventually_async(lambda: len(events) == 2, 5.0, "the event on the new stream")

        assert [e["id"] for e in events] == ["a", "b"]
        assert connects == [0, 1]  # once per stream, before its events
        assert engine.opened_since == [None, 100]  # reopened from the last event seen
    finally:
        await feed.close()
    assert engine.streams[1].closed


async def test_feed_closes_while_the_engine_is_down() -> None:
    engine = Engine()
    engine.up.clear()
    feed = EventFeed(
        engine.open,
        on_event=lambda e: None,
        on_connect=lambda: None,
        unreachable=(ConnectionError,),
        retry_initial_s=0.01,
        retry_max_s=10.0,
        name="test-feed",
    )
    feed.start(asyncio.get_running_loop())
    await eventually_async(lambda: engine.refused >= 2, 5.0, "refused connects")
    async with asyncio.timeout(2):  # does not sit out its backoff
        await feed.close()
