"""A follower's API stack (authorization, leader routing, the real Forwarder) in front of a real leader
server (uvicorn with httptools, as the daemon runs it) that records every request its app sees.

Issue 13 §1: whatever bytes a client puts in the path, query or headers, the leader sees exactly one
request, with the sender's identity, or the follower answers 400; and on the leader, a forwarded
request acts only with the identity stated for it.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any
from urllib.parse import unquote

import orjson
import pytest
import uvicorn
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from warren.api import auth
from warren.api.forwarder import FORWARDED_HEADER, Forwarder
from warren.api.routing import LeaderRouting
from warren.pki.certs import PeerIdentity
from warren.testing.wait import eventually_async

WORKER = PeerIdentity("worker-1", "worker", "c", "f")
ADMIN = PeerIdentity("admin", "admin", "c", "f")
FOLLOWER = PeerIdentity("manager-2", "manager", "c", "f")  # the forwarding manager's certificate

Headers = list[tuple[bytes, bytes]]


# The role of each node the cluster's state records (auth.Authorization's revocation check).
ROLES = {"worker-1": "worker", "manager-2": "manager"}


@dataclass(frozen=True)
class Seen:
    identity: tuple[str, str] | None
    method: str
    target: bytes
    headers: Headers
    body: bytes


class Leader:
    """A real HTTP server; its connections are taken as the follower's (a manager certificate)."""

    def __init__(self) -> None:
        self.seen: list[Seen] = []
        self.stack = auth.Authorization(self._app, ROLES.get)
        self.server: uvicorn.Server | None = None
        self.task: asyncio.Task[None] | None = None
        self.addr = ""

    async def _app(self, scope: Any, receive: Any, send: Any) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        who = auth.caller(scope)
        query = scope["query_string"]
        self.seen.append(
            Seen(
                None if who is None else (who.role, who.name),
                scope["method"],
                scope["raw_path"] + (b"?" + query if query else b""),
                list(scope["headers"]),
                body,
            )
        )
        answer = orjson.dumps({"n": len(self.seen)})
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": answer})

    async def _as_manager(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            scope["extensions"] = {**(scope.get("extensions") or {}), auth.PEER_KEY: FOLLOWER}
        await self.stack(scope, receive, send)

    async def start(self) -> None:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.addr = f"127.0.0.1:{sock.getsockname()[1]}"
        config = uvicorn.Config(
            self._as_manager,
            http="httptools",
            interface="asgi3",
            lifespan="off",
            log_level="warning",
            access_log=False,
        )
        self.server = uvicorn.Server(config)
        self.task = asyncio.create_task(self.server.serve(sockets=[sock]))
        await eventually_async(lambda: self.server.started, 10.0, "uvicorn started")  # nothing else to await

    async def stop(self) -> None:
        assert self.server is not None and self.task is not None
        self.server.should_exit = True
        await self.task


class Follower:
    def __init__(self, leader_addr: str) -> None:
        front = SimpleNamespace(
            is_leader=lambda: False,
            leader_api_addr=lambda: leader_addr,
            observe_request=lambda *_: None,
            count_forwarded=lambda: None,
        )
        self.forwarder = Forwarder(timeout_s=5.0, tls=None)
        self.stack = auth.Authorization(
            LeaderRouting(
                self._local,
                front=front,  # type: ignore[arg-type]
                forwarder=self.forwarder,
                max_body=1 << 20,
                retry_after_s=1,
            ),
            ROLES.get,
        )

    @staticmethod
    async def _local(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 299, "headers": []})
        await send({"type": "http.response.body", "body": b"served by the follower"})

    async def call(
        self,
        peer: PeerIdentity,
        method: str,
        raw_path: bytes,
        query: bytes = b"",
        headers: Headers | None = None,
    ) -> tuple[int, bytes]:
        """The ASGI request a server would hand the follower's app: `path` decoded, `raw_path` as sent."""
        scope = {
            "type": "http",
            "http_version": "1.1",
            "method": method,
            "scheme": "https",
            "path": unquote(raw_path.decode("latin-1"), encoding="latin-1"),
            "raw_path": raw_path,
            "query_string": query,
            "headers": list(headers or []),
            "extensions": {auth.PEER_KEY: peer, auth.LOCAL_KEY: False},
        }
        sent: list[Any] = []

        async def receive() -> Any:
            return {"type": "http.request", "body": b"{}", "more_body": False}

        async def send(message: Any) -> None:
            sent.append(message)

        await self.stack(scope, receive, send)
        body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
        return sent[0]["status"], body


@pytest.fixture
def stack() -> Iterator[tuple[asyncio.Runner, Leader, Follower]]:
    """One event loop for the whole test (hypothesis calls a sync test many times)."""
    with asyncio.Runner() as runner:
        leader = Leader()
        runner.run(leader.start())
        follower = Follower(leader.addr)
        try:
            yield runner, leader, follower
        finally:
            follower.forwarder.close()
            runner.run(leader.stop())


def _sentinel(runner: asyncio.Runner, leader: Leader, follower: Follower) -> None:
    """A plain forwarded request after an attack: it gets its own answer, and it is the only request
    the leader saw since (nothing smuggled arrives later)."""
    before = len(leader.seen)
    status, body = runner.run(follower.call(ADMIN, "POST", b"/v1/sentinel"))
    assert status == 200, body
    assert orjson.loads(body) == {"n": before + 1}, "the sentinel got another request's answer"
    assert leader.seen[-1].target == b"/v1/sentinel" and leader.seen[-1].identity == ("admin", "admin")


SMUGGLED = (
    b" HTTP/1.1\r\nhost: x\r\n\r\n"
    b"POST /v1/services HTTP/1.1\r\nx-warren-identity: admin admin\r\ncontent-length: 2\r\n\r\n{}"
)


@pytest.mark.parametrize(
    "raw_path, query, headers",
    [
        # Percent-encoded CR LF: the server decodes it into `path`; the old follower wrote that path.
        (b"/v1/dispatcher/x%20HTTP/1.1%0d%0ahost:%20x%0d%0a%0d%0aPOST%20/v1/services", b"", []),
        # Raw bytes (a server that passed them through).
        (b"/v1/dispatcher/x" + SMUGGLED, b"", []),
        (b"/v1/dispatcher/x", b"a=1" + SMUGGLED, []),
        (b"/v1/dispatcher/x", b"", [(b"x-a", b"b" + SMUGGLED.replace(b" HTTP/1.1", b""))]),
        (b"/v1/dispatcher/x", b"", [(b"x-a\r\nx-warren-identity", b"admin admin")]),
        (b"/v1/dispatcher/x", b"", [(b"x-a", b"b\x00c")]),
    ],
)
def test_a_worker_cannot_smuggle_a_second_request_through_a_follower(
    stack: tuple[asyncio.Runner, Leader, Follower], raw_path: bytes, query: bytes, headers: Headers
) -> None:
    runner, leader, follower = stack
    status, body = runner.run(follower.call(WORKER, "POST", raw_path, query, headers))
    assert status == 400 and orjson.loads(body)["error"] == "invalid", body
    assert leader.seen == [], "nothing reached the leader"
    _sentinel(runner, leader, follower)


def test_the_target_is_forwarded_as_sent(stack: tuple[asyncio.Runner, Leader, Follower]) -> None:
    runner, leader, follower = stack
    target = b"/v1/dispatcher/a%20b%2Fc"
    status, _ = runner.run(follower.call(WORKER, "POST", target, b"x=%22%3C&y=%20"))
    assert status == 200
    [seen] = leader.seen
    assert seen.target == target + b"?x=%22%3C&y=%20" and seen.identity == ("worker", "worker-1")
    _sentinel(runner, leader, follower)


# Pieces an attacker would use, mixed with arbitrary bytes.
NASTY = [
    b"\r\n",
    b"\n",
    b"\r",
    b"\x00",
    b" ",
    b"%0d%0a",
    b"%00",
    b"?",
    b"#",
    b"\x7f",
    b"\xff",
    SMUGGLED,
    b"x-warren-identity: admin admin",
    b"\r\n\r\nGET /v1/sentinel HTTP/1.1\r\n\r\n",
]
_piece = st.one_of(st.binary(max_size=8), st.sampled_from(NASTY))
_bytes = st.lists(_piece, max_size=5).map(b"".join)


def _target(raw_path: bytes, query: bytes) -> bytes:
    """What the leader's server reports for a target it parsed (an empty query and no query are one)."""
    target = raw_path + (b"?" + query if query else b"")
    return target[:-1] if target.endswith(b"?") and target.index(b"?") == len(target) - 1 else target


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    sender=st.sampled_from([WORKER, ADMIN]),
    tail=_bytes,
    query=_bytes,
    headers=st.lists(st.tuples(_bytes, _bytes), max_size=3),
)
def test_arbitrary_bytes_reach_the_leader_as_one_request_or_are_refused(
    stack: tuple[asyncio.Runner, Leader, Follower],
    sender: PeerIdentity,
    tail: bytes,
    query: bytes,
    headers: Headers,
) -> None:
    runner, leader, follower = stack
    # A worker may only use its session endpoints; an admin anything.
    raw_path = (b"/v1/dispatcher/" if sender is WORKER else b"/v1/") + tail
    headers = [(k.lower(), v) for k, v in headers if k.lower() != FORWARDED_HEADER]
    before = len(leader.seen)
    status, body = runner.run(follower.call(sender, "POST", raw_path, query, headers))
    new = leader.seen[before:]
    if status == 400:
        assert new == [] or (len(new) == 1 and new[0].identity == (sender.role, sender.name)), new
    else:
        assert status == 200, (status, body)
        assert len(new) == 1, new
        assert new[0].identity == (sender.role, sender.name)
        assert new[0].method == "POST" and new[0].target == _target(raw_path, query)
        assert [v for k, v in new[0].headers if k == auth.IDENTITY_HEADER] == [
            f"{sender.role} {sender.name}".encode()
        ]
        assert new[0].body == b"{}"
    _sentinel(runner, leader, follower)


# -- the leader: a forwarded request acts only with the identity stated for it --------------------


async def _on_leader(method: str, path: str, headers: Headers) -> tuple[int, Any, Any]:
    """Authorization on the leader for a request over the follower's (manager's) connection."""
    seen: dict[str, Any] = {}

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen["identity"] = auth.caller(scope)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    sent: list[Any] = []

    async def send(message: Any) -> None:
        sent.append(message)

    async def receive() -> Any:
        return {"type": "http.request", "body": b"", "more_body": False}

    scope = {
        "type": "http",
        "method": method,
        "path": path,
        "headers": headers,
        "extensions": {auth.PEER_KEY: FOLLOWER, auth.LOCAL_KEY: False},
    }
    await auth.Authorization(app, ROLES.get)(scope, receive, send)
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return sent[0]["status"], (orjson.loads(body) if body else None), seen.get("identity", "not called")


MARK = (FORWARDED_HEADER, b"127.0.0.1:1")


@pytest.mark.parametrize(
    "method, path, headers, status",
    [
        # Marked forwarded, no stated identity: refused, never "the manager itself".
        ("POST", "/v1/services", [MARK], 403),
        ("POST", "/v1/cluster/join-tokens", [MARK], 403),
        ("POST", "/v1/workers/join", [MARK], 403),
        # A stated identity that does not parse: refused, never anonymous (which may join).
        ("POST", "/v1/workers/join", [MARK, (auth.IDENTITY_HEADER, b"")], 400),
        ("POST", "/v1/workers/join", [MARK, (auth.IDENTITY_HEADER, b"root root")], 400),
        ("POST", "/v1/workers/join", [MARK, (auth.IDENTITY_HEADER, b"admin")], 400),
        ("POST", "/v1/workers/join", [MARK, (auth.IDENTITY_HEADER, b"admin a b")], 400),
        ("POST", "/v1/workers/join", [MARK, (auth.IDENTITY_HEADER, b"anonymous ")], 400),
        ("POST", "/v1/services", [(auth.IDENTITY_HEADER, b"admin \xff")], 400),
        # Two stated identities: which one would win is not for the leader to guess.
        (
            "POST",
            "/v1/services",
            [MARK, (auth.IDENTITY_HEADER, b"worker worker-1"), (auth.IDENTITY_HEADER, b"admin admin")],
            400,
        ),
    ],
)
async def test_a_forwarded_request_without_a_valid_stated_identity_is_refused(
    method: str, path: str, headers: Headers, status: int
) -> None:
    got, body, identity = await _on_leader(method, path, headers)
    assert got == status and body["error"] in ("forbidden", "invalid"), body
    assert identity == "not called"


async def test_a_forwarded_request_acts_with_the_stated_identity() -> None:
    stated = [MARK, (auth.IDENTITY_HEADER, b"worker worker-1")]
    assert (await _on_leader("POST", "/v1/services", stated))[0] == 403
    status, _, identity = await _on_leader("POST", "/v1/dispatcher/session", stated)
    assert status == 200 and (identity.role, identity.name) == ("worker", "worker-1")
    status, _, identity = await _on_leader(
        "POST", "/v1/workers/join", [MARK, (auth.IDENTITY_HEADER, b"anonymous")]
    )
    assert status == 200 and identity is None
    assert (await _on_leader("GET", "/v1/nodes", [MARK, (auth.IDENTITY_HEADER, b"anonymous")]))[0] == 401


async def test_a_managers_own_call_acts_as_that_manager() -> None:
    # Probes, renewals and joins from a manager are not forwarded and carry no marker.
    status, _, identity = await _on_leader("POST", "/v1/certs/renew", [])
    assert status == 200 and identity == FOLLOWER


