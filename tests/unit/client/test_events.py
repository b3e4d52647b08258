"""The event stream's client side: the SSE parser (any chunking, every line ending, comments, ids),
following across managers without duplicates, and `warren events`' filters and lines."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from tests.unit.client.test_manager import FakeTime
from warren.cli import events_cmds
from warren.cli.main import main
from warren.cli.parsing import UsageError
from warren.client import ManagerClient
from warren.client.sse import Message, Parser
from warren.errors import UnavailableError, WarrenError

STREAM = (
    "retry: 1000\n\n"
    ": keep-alive\n\n"
    'id: 5.0\nevent: task\ndata: {"id": "5.0"}\n\n'
    'event: gap\ndata: {"after": "1.0", "before": "5.0", "message": "gone"}\n\n'
    "data: a\ndata: b\n\n"
)


def parse_all(chunks: list[str]) -> list[Message]:
    parser = Parser()
    return [m for chunk in chunks for m in parser.feed(chunk)]


def test_the_parser_reads_messages_whatever_the_chunks() -> None:
    whole = parse_all([STREAM])
    assert [(m.event, m.data, m.id) for m in whole] == [
        ("task", '{"id": "5.0"}', "5.0"),
        ("gap", '{"after": "1.0", "before": "5.0", "message": "gone"}', "5.0"),
        ("message", "a\nb", "5.0"),
    ]
    assert whole[0].retry_ms == 1000
    assert parse_all(list(STREAM)) == whole  # one character at a time
    for ending in ("\r\n", "\r"):
        text = STREAM.replace("\n", ending)
        assert parse_all([text]) == whole
        assert parse_all(list(text)) == whole


def test_the_parser_refuses_a_message_it_would_have_to_hold_without_end() -> None:
    from warren.client.sse import MAX_MESSAGE_CHARS

    # One line that never ends, or data lines with no blank line to dispatch them: refused once past
    # the bound, not held in memory.
    endless = Parser()
    with pytest.raises(WarrenError, match="over"):
        for _ in range(MAX_MESSAGE_CHARS // 4096 + 2):
            list(endless.feed("x" * 4096))
    undispatched = Parser()
    with pytest.raises(WarrenError, match="over"):
        for _ in range(MAX_MESSAGE_CHARS // 4096 + 2):
            list(undispatched.feed("data: " + "y" * 4090 + "\n"))
    # Many messages in one chunk are read whole, and a long run of them is fine.
    many = "".join(f"id: {i}.0\nevent: task\ndata: {{}}\n\n" for i in range(20_000))
    got = list(Parser().feed(many))
    assert len(got) == 20_000 and got[-1].id == "19999.0"


def test_the_parser_follows_the_standard_on_the_odd_lines() -> None:
    got = parse_all(["data\n\n", "data:  two spaces\n\n", "id: a\0b\ndata: x\n\n", "event: e\n\n", "data: y"])
    # A field without a colon is empty; only one space goes; an id with NUL is ignored; no data: no
    # message; an unterminated message is not dispatched.
    assert [(m.event, m.data, m.id) for m in got] == [("message", "", None), ("message", " two spaces", None),
                                                      ("message", "x", None)]


def sse(*events: dict[str, str]) -> str:
    return "".join(f"id: {e['id']}\nevent: task\ndata: {json.dumps(e)}\n\n" for e in events)


class Managers:
    """Two managers: A streams events 1 and 2, then dies; B holds 1..4."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, str | None]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        since = request.url.params.get("since")
        host = request.url.host
        self.asked.append((host, since))
        assert request.url.params.get("follow") == "true"
        if host == "127.0.0.1":
            return httpx.Response(200, stream=Broken(sse({"id": "1.0"}, {"id": "2.0"})),
                                  headers={"content-type": "text/event-stream"})
        held = [{"id": f"{i}.0"} for i in range(1, 5)]
        after = [e for e in held if since is None or float(e["id"]) > float(since)]
        return httpx.Response(200, text=sse(*after), headers={"content-type": "text/event-stream"})


class Broken(httpx.SyncByteStream):
    """A stream that breaks off after its text, as a killed manager's does."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __iter__(self) -> Iterator[bytes]:
        yield self.text.encode()
        raise httpx.ReadError("connection reset by peer")


def test_following_resumes_on_another_manager_from_the_last_id() -> None:
    time = FakeTime()
    managers = Managers()
    client = ManagerClient("127.0.0.1:8080,127.0.0.2:8080", transport=httpx.MockTransport(managers),
                           sleep=time.sleep, clock=time.clock)
    got = []
    with client:
        stream = client.follow_events(filters={"type": ["task"]})
        for kind, body in stream:
            got.append((kind, body.get("id") or body.get("reason")))
            if body.get("id") == "4.0":
                break
        stream.close()
    ids = [x for k, x in got if k == "event"]
    assert ids == ["1.0", "2.0", "3.0", "4.0"]  # no duplicates, nothing lost
    assert got[2][0] == "reconnect" and "broke off" in str(got[2][1])
    assert managers.asked == [("127.0.0.1", None), ("127.0.0.2", "2.0")]


def test_a_manager_sending_garbage_is_an_error() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, text="event: task\ndata: [1]\n\n")

    with ManagerClient("127.0.0.1:8080", transport=httpx.MockTransport(handler)) as client, \
            pytest.raises(WarrenError, match="not a JSON object"):
        list(client.follow_events())


def test_following_ends_when_no_manager_answers() -> None:
    time = FakeTime()

    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused")

    client = ManagerClient("127.0.0.1:8080", transport=httpx.MockTransport(handler), sleep=time.sleep,
                           clock=time.clock)
    with client, pytest.raises(UnavailableError):
        list(client.follow_events())


@pytest.mark.parametrize(
    ("given", "parsed"),
    [
        (["type=task,service=web"], {"type": ["task"], "service": ["web"]}),
        (["type=node,manager", "node=w1"], {"type": ["node", "manager"], "node": ["w1"]}),
        ([], {}),
    ],
)
def test_filters_parse(given: list[str], parsed: dict[str, list[str]]) -> None:
    assert events_cmds.parse_filters(given) == parsed


@pytest.mark.parametrize("bad", ["colour=red", "web", "type="])
def test_bad_filters_are_usage_errors(bad: str) -> None:
    with pytest.raises(UsageError):
        events_cmds.parse_filters([bad])


def test_an_event_is_one_line_like_docker_events() -> None:
    line = events_cmds.format_event(
        {"id": "3.0", "time": 0.5, "type": "task", "action": "state", "actor": "t1",
         "attributes": {"service": "web", "from": "assigned", "to": "running", "reason": "x\x1b[2J",
                        "n": None},
         "message": "..."}
    )
    assert line == (
        "1970-01-01T00:00:00.500000Z task state t1 (service=web, from=assigned, to=running, reason=x\\x1b[2J)"
    )


def test_the_command_prints_events_and_what_was_lost(capsys: pytest.CaptureFixture[str]) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.params.get("since") == "10m" and request.url.params.get("type") == "task"
        return httpx.Response(200, json={
            "events": [{"id": "7.0", "time": 1.0, "type": "task", "action": "state", "actor": "t1",
                        "attributes": {}, "message": "m"}],
            "first": "7.0", "last": "7.0",
            "lost": {"after": "10m", "before": "7.0", "message": "some are gone"},
        })

    def connect(manager: str) -> ManagerClient:
        return ManagerClient(manager, transport=httpx.MockTransport(handler))

    assert main(["events", "--since", "10m", "--filter", "type=task", "-o", "json"], connect=connect) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["id"] == "7.0"
    assert "events lost: some are gone" in err
