"""ManagerSession: failover across managers, error mapping, timeouts, and credentials kept out of logs."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import orjson
import pytest

from tests.unit.fake_manager import NODE, FakeManager
from tests.unit.fake_manager import SECRET as FAKE_SECRET
from tests.unit.fake_manager import transport as fake_transport
from warren.config import WorkerSettings
from warren.errors import InvalidError, UnauthorizedError, UnavailableError
from warren.worker.cache import StatusUpdate, WorkerCache
from warren.worker.reporter import StatusReporter
from warren.worker.session import Backoff, ManagerSession, NodeRemovedError

pytestmark = pytest.mark.anyio

A, B, C = "127.0.0.1:7101", "127.0.0.1:7102", "127.0.0.1:7103"
SECRET = "secret-" + "x" * 36
TOKEN = "SWMTKN-1-" + "t" * 50
Handler = Callable[[httpx.Request], Awaitable[httpx.Response]]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def answer(status: int, doc: object) -> httpx.Response:
    return httpx.Response(status, content=orjson.dumps(doc))


class Net:
    """Per-address behaviour: "refuse", "timeout", or a status code (with a JSON body)."""

    def __init__(self) -> None:
        self.behaviour: dict[str, object] = {A: 200, B: 200, C: 200}
        self.calls: list[tuple[str, str]] = []
        self.requests: list[httpx.Request] = []

    async def handle(self, request: httpx.Request) -> httpx.Response:
        where = f"{request.url.host}:{request.url.port}"
        self.calls.append((where, request.url.path))
        self.requests.append(request)
        what = self.behaviour[where]
        if what == "refuse":
            raise httpx.ConnectError("[Errno 111] Connection refused", request=request)
        if what == "timeout":
            raise httpx.ReadTimeout("timed out", request=request)
        status = int(what)  # type: ignore[call-overload]
        if status == 201 or request.url.path == "/v1/workers/join" and status == 200:
            return answer(
                201, {"name": "worker-1", "secret": SECRET, "cluster_id": "c-1", "heartbeat_period_s": 0.5}
            )
        if status == 200:
            return answer(200, {"ok": True})
        return answer(
            status,
            {
                "error": {400: "invalid", 401: "unauthorized", 503: "unavailable", 410: "gone"}.get(
                    status, "x"
                ),
                "message": f"said {status}",
            },
        )


def session(net: Net, managers: tuple[str, ...] = (A, B, C), **settings: float) -> ManagerSession:
    s = ManagerSession(
        managers,
        WorkerSettings(managers=managers, **settings),  # type: ignore[arg-type]
        transport=httpx.MockTransport(net.handle),
    )
    s.authenticate("worker-1", SECRET)
    return s


async def test_a_refusing_manager_is_left_at_once_and_the_next_one_sticks() -> None:
    net = Net()
    net.behaviour[A] = "refuse"
    s = session(net)
    await s.status([])
    assert s.current == B
    await s.status([])
    assert net.calls == [
        (A, "/v1/dispatcher/status"),
        (B, "/v1/dispatcher/status"),
        (B, "/v1/dispatcher/status"),
    ]


async def test_timeouts_and_503_move_on_and_a_failed_round_raises_unavailable() -> None:
    net = Net()
    net.behaviour.update({A: "timeout", B: 503, C: "refuse"})
    s = session(net)
    with pytest.raises(UnavailableError) as info:
        await s.status([])
    assert [where for where, _ in net.calls] == [A, B, C]
    assert "timed out" in str(info.value) and "said 503" in str(info.value) and "refused" in str(info.value)
    assert s.round_failed
    net.behaviour[B] = 200
    before = s.successes
    await s.status([])
    assert not s.round_failed and s.successes == before + 1 and s.current == B


async def test_session_request_timeout_is_the_hold_plus_session_timeout() -> None:
    net = Net()
    s = session(net, request_timeout_s=2.0, session_timeout_s=0.75)
    await s.session({"known": None}, hold_s=1.5)
    timeouts = net.requests[-1].extensions["timeout"]
    assert timeouts["read"] == 2.25
    await s.status([])
    assert net.requests[-1].extensions["timeout"]["read"] == 2.0
    body = orjson.loads(net.requests[0].content)
    assert body == {"node": "worker-1", "known": None}


async def test_401_after_joining_means_the_node_was_removed() -> None:
    net = Net()
    net.behaviour[A] = 401
    s = session(net)
    with pytest.raises(NodeRemovedError):
        await s.session({}, hold_s=0.1)
    assert [where for where, _ in net.calls] == [A]  # an answer, not a failure: no other manager asked


async def test_a_refused_join_token_is_unauthorized_not_removed() -> None:
    net = Net()
    net.behaviour[A] = 401
    s = ManagerSession((A,), WorkerSettings(managers=(A,)), transport=httpx.MockTransport(net.handle))
    with pytest.raises(UnauthorizedError, match="refused the join token") as info:
        await s.join(TOKEN, "127.0.0.1", {}, {})
    assert not isinstance(info.value, NodeRemovedError)
    assert "Authorization" not in net.requests[0].headers  # the join carries the token in its body only


async def test_join_answer_and_the_secret_header_afterwards() -> None:
    net = Net()
    s = ManagerSession((A,), WorkerSettings(managers=(A,)), transport=httpx.MockTransport(net.handle))
    joined = await s.join(TOKEN, "10.0.0.5", {"zone": "a"}, {"cpus": 2.0})
    assert (joined.name, joined.secret, joined.cluster_id, joined.heartbeat_period_s) == (
        "worker-1",
        SECRET,
        "c-1",
        0.5,
    )
    assert SECRET not in repr(joined)
    assert orjson.loads(net.requests[0].content) == {
        "token": TOKEN,
        "addr": "10.0.0.5",
        "labels": {"zone": "a"},
        "resources": {"cpus": 2.0},
    }
    s.authenticate(joined.name, joined.secret)
    await s.status([])
    assert net.requests[-1].headers["Authorization"] == f"Bearer {SECRET}"


async def test_other_errors_raise_their_warren_class() -> None:
    net = Net()
    net.behaviour[A] = 400
    s = session(net)
    with pytest.raises(InvalidError, match="said 400"):
        await s.status([])


async def test_log_chunk_says_false_when_nobody_waits() -> None:
    net = Net()
    s = session(net)
    assert await s.log_chunk("ab", b"hello", end=False) is True
    assert "X-Warren-Log-End" not in net.requests[-1].headers
    assert await s.log_chunk("ab", b"", end=True) is True
    assert net.requests[-1].headers["X-Warren-Log-End"] == "1"
    net.behaviour[A] = 410
    assert await s.log_chunk("ab", b"more", end=False) is False


async def test_credentials_never_reach_the_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    net = Net()
    net.behaviour.update({A: "refuse", B: 503, C: 401})
    s = ManagerSession(
        (A, B, C), WorkerSettings(managers=(A, B, C)), transport=httpx.MockTransport(net.handle)
    )
    with pytest.raises(UnauthorizedError) as info:
        await s.join(TOKEN, "127.0.0.1", {}, {})
    s.authenticate("worker-1", SECRET)
    with pytest.raises(NodeRemovedError) as removed:
        await s.status([])
    assert caplog.records
    for text in (caplog.text, str(info.value), str(removed.value)):
        assert TOKEN not in text and SECRET not in text


async def test_wait_success_wakes_on_the_next_answer() -> None:
    net = Net()
    s = session(net)
    seen = s.successes
    waiter = asyncio.create_task(s.wait_success(seen, timeout_s=5.0))
    await asyncio.sleep(0)
    assert not waiter.done()
    await s.status([])
    assert await waiter is True
    assert await s.wait_success(s.successes, timeout_s=0.01) is False


def test_backoff_doubles_up_to_the_maximum_and_resets() -> None:
    b = Backoff(0.2, 1.0)
    assert [b.delay() for _ in range(5)] == [0.2, 0.4, 0.8, 1.0, 1.0]
    b.reset()
    assert b.delay() == 0.2


async def until(condition: Callable[[], object], timeout_s: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.005)


async def test_reporter_isolates_a_refused_update_and_delivers_the_rest(tmp_path: Path) -> None:
    m = FakeManager()
    m.refuse_word = "BAD"
    settings = WorkerSettings(managers=(A,), retry_initial_delay_s=0.01, retry_max_delay_s=0.02)
    s = ManagerSession((A,), settings, transport=fake_transport({A: m}))
    s.authenticate(NODE, FAKE_SECRET)
    cache = WorkerCache.open(str(tmp_path))
    reporter = StatusReporter(s, cache, settings)
    sending = asyncio.create_task(reporter.run())
    try:
        m.refuse = True  # queued while no manager answers, then sent as one batch
        for task_id, message in (("t1", "ok"), ("t2", "BAD one"), ("t3", "ok too")):
            reporter.report(StatusUpdate(task_id, "running", message, 1.0))
        await until(lambda: s.round_failed)  # tried, and no manager answered
        assert len(cache.pending()) == 3 and not m.updates
        m.refuse = False
        await until(lambda: not cache.pending())
    finally:
        sending.cancel()
        cache.close()
    assert [u["task_id"] for u in m.updates] == ["t1", "t3"]
