"""WorkerClient: the TLS join (CA pinned by the token), failover across managers, error mapping,
timeouts, certificate swaps, and credentials kept out of logs."""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
import ssl
import stat
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import orjson
import pytest

from tests.unit.fake_manager import CA_PEM, NODE, FakeManager, issue, node_material, other_ca_pem
from tests.unit.fake_manager import SECRET as FAKE_SECRET
from tests.unit.fake_manager import transport as fake_transport
from warren.config import WorkerSettings
from warren.errors import InvalidError, UnauthorizedError, UnavailableError, WarrenError
from warren.pki import certs, tokens
from warren.pki import material as material_module
from warren.pki.join import new_join_key
from warren.pki.material import NodeMaterial, load_node, tls_dir
from warren.testing.wait import eventually_async
from warren.worker import client as client_module
from warren.worker.backoff import Backoff
from warren.worker.cache import StatusUpdate, WorkerCache
from warren.worker.client import NodeRemovedError, WorkerClient
from warren.worker.reporter import StatusReporter

A, B, C = "127.0.0.1:7101", "127.0.0.1:7102", "127.0.0.1:7103"
SECRET = "secret-" + "x" * 36
TOKEN = tokens.mint(certs.ca_digest(CA_PEM))
Handler = Callable[[httpx.Request], Awaitable[httpx.Response]]


def answer(status: int, doc: object) -> httpx.Response:
    return httpx.Response(status, content=orjson.dumps(doc))


class Net:
    """Per-address behaviour: "refuse", "timeout", "tls" (a failed handshake), or a status code (with
    a JSON body). Every manager has the CA `ca_pem` (what the anonymous CA fetch gets)."""

    def __init__(self) -> None:
        self.behaviour: dict[str, object] = {A: 200, B: 200, C: 200}
        self.calls: list[tuple[str, str]] = []
        self.requests: list[httpx.Request] = []
        self.fetched: list[str] = []
        self.ca_pem = CA_PEM
        self.join_cert: bytes | None = None  # answer the join with this certificate instead

    def fetch_ca(self, manager: str, token: str) -> bytes:
        """WorkerClient's `fetch_ca`: as warren.pki.join.pinned_ca, but from `behaviour`."""
        self.fetched.append(manager)
        if self.behaviour[manager] in ("refuse", "timeout"):
            raise UnavailableError(f"cannot reach manager at {manager}: [Errno 111] Connection refused")
        expected = tokens.ca_digest(token)
        if expected is None or not hmac.compare_digest(certs.ca_digest(self.ca_pem), expected):
            raise UnauthorizedError(
                f"the manager at {manager} presents a CA that does not match the join token's digest"
            )
        return self.ca_pem

    async def handle(self, request: httpx.Request) -> httpx.Response:
        where = f"{request.url.host}:{request.url.port}"
        assert request.url.scheme == "https"
        self.calls.append((where, request.url.path))
        self.requests.append(request)
        what = self.behaviour[where]
        if what == "refuse":
            raise httpx.ConnectError("[Errno 111] Connection refused", request=request)
        if what == "timeout":
            raise httpx.ReadTimeout("timed out", request=request)
        if what == "tls":
            cause = ssl.SSLCertVerificationError(1, "certificate verify failed")
            cause.verify_message = "certificate has expired"
            raise httpx.ConnectError(str(cause), request=request) from cause
        status = int(what)  # type: ignore[call-overload]
        if status == 201 or request.url.path == "/v1/workers/join" and status == 200:
            csr = orjson.loads(request.content)["csr"]
            cert = self.join_cert or issue(csr, name="worker-1")
            return answer(
                201,
                {
                    "name": "worker-1",
                    "secret": SECRET,
                    "cluster_id": "cluster-abc123",
                    "heartbeat_period_s": 0.5,
                    "certificate": cert.decode("ascii"),
                    "ca": CA_PEM.decode("ascii"),
                },
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


@pytest.fixture(scope="module")
def material(tmp_path_factory: pytest.TempPathFactory) -> NodeMaterial:
    """TLS material of a worker that has joined (the session presents it)."""
    return node_material(str(tmp_path_factory.mktemp("joined")), name="worker-1")


def unjoined(net: Net, managers: tuple[str, ...] = (A, B, C)) -> WorkerClient:
    return WorkerClient(
        managers,
        WorkerSettings(managers=managers),
        transport=httpx.MockTransport(net.handle),
        fetch_ca=net.fetch_ca,
    )


def session(
    net: Net, material: NodeMaterial, managers: tuple[str, ...] = (A, B, C), **settings: float
) -> WorkerClient:
    s = WorkerClient(
        managers,
        WorkerSettings(managers=managers, **settings),  # type: ignore[arg-type]
        transport=httpx.MockTransport(net.handle),
        fetch_ca=net.fetch_ca,
    )
    s.use_material(material)
    s.authenticate("worker-1", SECRET)
    return s


async def test_a_refusing_manager_is_left_at_once_and_the_next_one_sticks(material: NodeMaterial) -> None:
    net = Net()
    net.behaviour[A] = "refuse"
    s = session(net, material)
    await s.status([])
    assert s.current == B
    await s.status([])
    assert net.calls == [
        (A, "/v1/dispatcher/status"),
        (B, "/v1/dispatcher/status"),
        (B, "/v1/dispatcher/status"),
    ]


async def test_timeouts_and_503_move_on_and_a_failed_round_raises_unavailable(material: NodeMaterial) -> None:
    net = Net()
    net.behaviour.update({A: "timeout", B: 503, C: "refuse"})
    s = session(net, material)
    with pytest.raises(UnavailableError) as info:
        await s.status([])
    assert [where for where, _ in net.calls] == [A, B, C]
    assert "timed out" in str(info.value) and "said 503" in str(info.value) and "refused" in str(info.value)
    assert s.round_failed
    net.behaviour[B] = 200
    before = s.successes
    await s.status([])
    assert not s.round_failed and s.successes == before + 1 and s.current == B


async def test_session_request_timeout_is_the_hold_plus_session_timeout(material: NodeMaterial) -> None:
    net = Net()
    s = session(net, material, request_timeout_s=2.0, session_timeout_s=0.75)
    await s.session({"known": None}, hold_s=1.5)
    timeouts = net.requests[-1].extensions["timeout"]
    assert timeouts["read"] == 2.25
    await s.status([])
    assert net.requests[-1].extensions["timeout"]["read"] == 2.0
    body = orjson.loads(net.requests[0].content)
    assert body == {"node": "worker-1", "known": None}


async def test_401_after_joining_means_the_node_was_removed(material: NodeMaterial) -> None:
    net = Net()
    net.behaviour[A] = 401
    s = session(net, material)
    with pytest.raises(NodeRemovedError):
        await s.session({}, hold_s=0.1)
    assert [where for where, _ in net.calls] == [A]  # an answer, not a failure: no other manager asked


async def test_a_refused_join_token_is_unauthorized_not_removed(tmp_path: Path) -> None:
    net = Net()
    net.behaviour[A] = 401
    s = unjoined(net, (A,))
    with pytest.raises(UnauthorizedError, match="refused the join token") as info:
        await s.join(TOKEN, "127.0.0.1", {}, {}, data_dir=str(tmp_path))
    assert not isinstance(info.value, NodeRemovedError)
    assert "Authorization" not in net.requests[0].headers  # the join carries the token in its body only
    assert load_node(str(tmp_path)) is None


async def test_join_sends_a_csr_saves_the_material_and_presents_it_afterwards(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    contexts: list[tuple[bytes, str | None]] = []

    def client_context(ca_pem: bytes, node_path: str | None) -> ssl.SSLContext:
        contexts.append((ca_pem, node_path))
        return material_module.client_context(ca_pem, node_path)

    monkeypatch.setattr(client_module, "client_context", client_context)
    net = Net()
    s = unjoined(net, (A,))
    joined = await s.join(TOKEN, "10.0.0.5", {"zone": "a"}, {"cpus": 2.0}, data_dir=str(tmp_path))
    assert (joined.name, joined.secret, joined.cluster_id, joined.heartbeat_period_s) == (
        "worker-1",
        SECRET,
        "cluster-abc123",
        0.5,
    )
    assert SECRET not in repr(joined) and "PRIVATE KEY" not in repr(joined)
    assert net.fetched == [A]  # the CA was checked before the join was sent
    body = orjson.loads(net.requests[0].content)
    csr = body.pop("csr")
    assert body == {"token": TOKEN, "addr": "10.0.0.5", "labels": {"zone": "a"}, "resources": {"cpus": 2.0}}
    # The key was made here, and only its CSR left: the saved key is the CSR's, and no request held it.
    saved = load_node(str(tmp_path))
    assert saved == joined.material
    assert certs.csr_public_key(csr) == certs.load_key(saved.key_pem).public_key()
    assert all(b"PRIVATE KEY" not in r.content for r in net.requests)
    assert (saved.identity.name, saved.identity.role) == ("worker-1", "worker")
    assert joined.cert_expires_at == certs.expires_at(saved.cert)
    assert stat.S_IMODE(os.stat(saved.node_path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(tls_dir(str(tmp_path))).st_mode) == 0o700
    # The join trusted the pinned CA and presented nothing; every call since presents the certificate.
    assert contexts == [(CA_PEM, None), (CA_PEM, saved.node_path)]
    s.authenticate(joined.name, joined.secret)
    await s.status([])
    assert net.requests[-1].headers["Authorization"] == f"Bearer {SECRET}"


async def test_a_token_for_another_ca_sends_nothing(tmp_path: Path) -> None:
    net = Net()
    s = unjoined(net)
    wrong = tokens.mint(certs.ca_digest(other_ca_pem()))
    with pytest.raises(UnauthorizedError, match="does not match the join token's digest") as info:
        await s.join(wrong, "127.0.0.1", {}, {}, data_dir=str(tmp_path))
    assert net.fetched == [A]  # not tried on the others: the token is wrong, not the manager
    assert not net.requests and wrong not in str(info.value)
    assert not os.path.exists(tls_dir(str(tmp_path)))


async def test_the_ca_fetch_fails_over_and_the_join_goes_where_it_worked(tmp_path: Path) -> None:
    net = Net()
    net.behaviour[A] = "refuse"
    s = unjoined(net)
    await s.join(TOKEN, "127.0.0.1", {}, {}, data_dir=str(tmp_path))
    assert net.fetched == [A, B] and net.calls == [(B, "/v1/workers/join")] and s.current == B


async def test_no_manager_for_the_ca_fetch_is_unavailable(tmp_path: Path) -> None:
    net = Net()
    net.behaviour.update({A: "refuse", B: "timeout", C: "refuse"})
    s = unjoined(net)
    with pytest.raises(UnavailableError, match="no manager answered") as info:
        await s.join(TOKEN, "127.0.0.1", {}, {}, data_dir=str(tmp_path))
    assert all(m in str(info.value) for m in (A, B, C)) and "\n" not in str(info.value)
    assert not net.requests and s.round_failed


async def test_a_join_answered_with_a_certificate_for_another_key_saves_nothing(tmp_path: Path) -> None:
    net = Net()
    net.join_cert = issue(new_join_key().csr_pem, name="worker-1")
    s = unjoined(net, (A,))
    with pytest.raises(WarrenError, match="bad certificate.*another key"):
        await s.join(TOKEN, "127.0.0.1", {}, {}, data_dir=str(tmp_path))
    assert load_node(str(tmp_path)) is None


async def test_no_call_before_a_certificate() -> None:
    s = unjoined(Net())
    s.authenticate("worker-1", SECRET)
    with pytest.raises(UnauthorizedError, match="join a cluster first"):
        await s.status([])


async def test_renew_posts_the_csr_with_the_secret(material: NodeMaterial) -> None:
    net = Net()
    s = session(net, material)
    await s.renew("CSR-PEM")
    assert net.calls == [(A, "/v1/certs/renew")]
    assert orjson.loads(net.requests[0].content) == {"csr": "CSR-PEM"}
    assert net.requests[0].headers["Authorization"] == f"Bearer {SECRET}"


async def test_new_material_leaves_a_held_call_alone_and_serves_the_next_ones(
    material: NodeMaterial, tmp_path: Path
) -> None:
    held = asyncio.Event()
    release = asyncio.Event()
    net = Net()

    async def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/dispatcher/session":
            held.set()
            await release.wait()
        return await net.handle(request)

    s = WorkerClient((A,), WorkerSettings(managers=(A,)), transport=httpx.MockTransport(handle))
    s.use_material(material)
    s.authenticate("worker-1", SECRET)
    first = s._http
    call = asyncio.create_task(s.session({}, hold_s=5.0))
    await held.wait()
    s.use_material(node_material(str(tmp_path), name="worker-1"))  # a renewal
    assert s._http is not first
    await s.status([])  # a new call: the new client
    assert first is not None and not first.is_closed  # the held call still uses it
    release.set()
    assert await call == {"ok": True}
    assert first.is_closed and not s._retired  # closed once its last call was done


async def test_a_failed_tls_handshake_says_so(material: NodeMaterial) -> None:
    net = Net()
    net.behaviour.update({A: "tls", B: "tls", C: "tls"})
    s = session(net, material)
    with pytest.raises(UnavailableError, match="TLS handshake failed \\(certificate has expired\\)"):
        await s.status([])


async def test_other_errors_raise_their_warren_class(material: NodeMaterial) -> None:
    net = Net()
    net.behaviour[A] = 400
    s = session(net, material)
    with pytest.raises(InvalidError, match="said 400"):
        await s.status([])


async def test_log_chunk_says_false_when_nobody_waits(material: NodeMaterial) -> None:
    net = Net()
    s = session(net, material)
    assert await s.log_chunk("ab", b"hello", end=False) is True
    assert "X-Warren-Log-End" not in net.requests[-1].headers
    assert await s.log_chunk("ab", b"", end=True) is True
    assert net.requests[-1].headers["X-Warren-Log-End"] == "1"
    net.behaviour[A] = 410
    assert await s.log_chunk("ab", b"more", end=False) is False


async def test_credentials_never_reach_the_logs(
    caplog: pytest.LogCaptureFixture, material: NodeMaterial, tmp_path: Path
) -> None:
    caplog.set_level(logging.DEBUG)
    net = Net()
    net.behaviour.update({A: "refuse", B: 503, C: 401})
    s = unjoined(net)
    with pytest.raises(UnauthorizedError) as info:
        await s.join(TOKEN, "127.0.0.1", {}, {}, data_dir=str(tmp_path))
    s.use_material(material)
    s.authenticate("worker-1", SECRET)
    with pytest.raises(NodeRemovedError) as removed:
        await s.status([])
    assert caplog.records
    for text in (caplog.text, str(info.value), str(removed.value)):
        assert TOKEN not in text and SECRET not in text and "PRIVATE KEY" not in text


async def test_wait_success_wakes_on_the_next_answer(material: NodeMaterial) -> None:
    net = Net()
    s = session(net, material)
    seen = s.successes
    waiter = asyncio.create_task(s.wait_success(seen, timeout_s=5.0))
    await asyncio.sleep(0)  # the waiter runs to its wait: the behaviour under test is that it stays there
    assert not waiter.done()
    await s.status([])
    assert await waiter is True
    assert await s.wait_success(s.successes, timeout_s=0.01) is False


def test_backoff_doubles_up_to_the_maximum_and_resets() -> None:
    b = Backoff(0.2, 1.0, rand=lambda lo, hi: hi)  # the ceilings of the jittered pauses
    assert [b.delay() for _ in range(5)] == [0.2, 0.4, 0.8, 1.0, 1.0]
    b.reset()
    assert b.delay() == 0.2


async def test_reporter_isolates_a_refused_update_and_delivers_the_rest(tmp_path: Path) -> None:
    m = FakeManager()
    m.refuse_word = "BAD"
    settings = WorkerSettings(managers=(A,), retry_initial_delay_s=0.01, retry_max_delay_s=0.02)
    s = WorkerClient((A,), settings, transport=fake_transport({A: m}))
    s.use_material(node_material(str(tmp_path / "node")))
    s.authenticate(NODE, FAKE_SECRET)
    cache = WorkerCache.open(str(tmp_path))
    reporter = StatusReporter(s, cache, settings)
    sending = asyncio.create_task(reporter.run())
    try:
        m.refuse = True  # queued while no manager answers, then sent as one batch
        for task_id, message in (("t1", "ok"), ("t2", "BAD one"), ("t3", "ok too")):
            reporter.report(StatusUpdate(task_id, "running", message, 1.0))
        await eventually_async(lambda: s.round_failed, 5.0, "a round that no manager answered")
        assert len(cache.pending()) == 3 and not m.updates
        m.refuse = False
        await eventually_async(lambda: not cache.pending(), 5.0, "the queued updates delivered")
    finally:
        sending.cancel()
        cache.close()
    assert [u["task_id"] for u in m.updates] == ["t1", "t3"]
