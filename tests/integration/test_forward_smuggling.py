"""A worker certificate cannot make a follower carry a second request to the leader (issue 13 §1).

A follower forwards writes to the leader over its own manager-authenticated connection. A worker may
call its session endpoints (/v1/dispatcher/...) on any manager; here it hides a second request (create
a service, issue a join token, create a secret) in that path, percent-encoded or as raw bytes on a raw
TLS socket. Every attempt is answered 400 or 403, nothing is created on the leader, and the next
forwarded request on the follower's pooled connection gets its own answer.
"""

from __future__ import annotations

import base64
import re
import socket
import ssl
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

import orjson

from tests.integration.cluster import read_until_closed
from tests.integration.fakeworker import tls_worker
from tests.integration.managers import TIMER_FLAGS, ManagerCluster, ManagerProc, api, create_service
from warren.formats import split_host_port

SMUGGLED = {
    "service": (b"/v1/services", {"name": "evil", "image": "nginx:1.27"}),
    "join token": (b"/v1/cluster/join-tokens", {"role": "manager"}),
    "secret": (b"/v1/secrets", {"name": "evil", "data": base64.b64encode(b"x").decode()}),
}


def _second(path: bytes, body: dict[str, object]) -> bytes:
    data = orjson.dumps(body)
    return (
        b"POST " + path + b" HTTP/1.1\r\nhost: leader\r\nx-warren-identity: admin admin\r\n"
        b"content-type: application/json\r\ncontent-length: %d\r\n\r\n" % len(data)
    ) + data


def _exchange(addr: str, context: ssl.SSLContext, data: bytes) -> list[int]:
    """Send `data` on a fresh TLS connection; the statuses of every answer until the server closes."""
    with socket.create_connection(split_host_port(addr, field="api"), timeout=10) as raw:
        with context.wrap_socket(raw) as tls:
            tls.sendall(data)
            answer = read_until_closed(tls, timeout=10)
    return [int(s) for s in re.findall(rb"HTTP/1\.[01] (\d{3}) ", answer)]


def _attacks(path: bytes, body: dict[str, object]) -> list[tuple[str, bytes, int]]:
    """(what, bytes on the wire, how many answers the smuggled part can get)."""
    second = _second(path, body)
    carrier = b"/v1/dispatcher/x"
    tail = b"content-length: 0\r\nconnection: close\r\n\r\n"
    # The follower's own " HTTP/1.1" and headers then complete a harmless third request.
    hidden = b" HTTP/1.1\r\nhost: leader\r\n\r\n" + second + b"GET /v1/health?x="
    encoded = quote(hidden, safe="").encode()
    pipelined = second.replace(b"\r\n\r\n", b"\r\nconnection: close\r\n\r\n", 1)
    return [
        # %0d%0a in the path: the server decodes it, and the old follower wrote the decoded path.
        ("encoded path", b"POST " + carrier + encoded + b" HTTP/1.1\r\nhost: f\r\n" + tail, 1),
        ("encoded query", b"POST " + carrier + b"?a=" + encoded + b" HTTP/1.1\r\nhost: f\r\n" + tail, 1),
        # Raw bytes: CR, LF, NUL and non-ASCII in the target, a header value cut by a bare CR or LF.
        ("raw CR in the target", b"POST " + carrier + b"\r" + second + b" HTTP/1.1\r\n" + tail, 1),
        ("raw LF in the target", b"POST " + carrier + b"\n" + second + b" HTTP/1.1\r\n" + tail, 1),
        ("raw NUL in the target", b"POST " + carrier + b"\x00 HTTP/1.1\r\nhost: f\r\n" + tail, 1),
        ("raw 0xff in the target", b"POST " + carrier + b"\xff HTTP/1.1\r\nhost: f\r\n" + tail, 1),
        ("bare LF in a header", b"POST " + carrier + b" HTTP/1.1\r\nx-a: b\n" + second + b"\r\n" + tail, 1),
        ("bare CR in a header", b"POST " + carrier + b" HTTP/1.1\r\nx-a: b\r" + second + b"\r\n" + tail, 1),
        ("NUL in a header", b"POST " + carrier + b" HTTP/1.1\r\nx-a: b\x00c\r\n" + tail, 1),
        # The second request sent as such after the worker's own: refused as the worker's.
        (
            "pipelined",
            b"POST " + carrier + b" HTTP/1.1\r\nhost: f\r\ncontent-length: 0\r\n\r\n" + pipelined,
            2,
        ),
    ]


def _created(leader: ManagerProc) -> list[str]:
    """What an attack could have made on the leader: services and secrets not made by the test."""
    with api(leader.api_addr) as admin:
        secrets = admin.get("/v1/secrets", params={"consistent": "true"})
    assert secrets.status_code == 200, secrets.text
    services = [s["name"] for s in leader.services(consistent=True) if not s["name"].startswith("legit-")]
    return services + [f"secret {s['name']}" for s in secrets.json()]


def test_a_worker_cannot_smuggle_requests_through_a_follower(
    make_managers: Callable[..., ManagerCluster], tmp_path: Path
) -> None:
    cluster = make_managers(extra_flags=TIMER_FLAGS)
    cluster.form(3)
    leader = cluster.leader()
    follower: ManagerProc = cluster.followers(leader)[0]
    _, worker_tls = tls_worker(tmp_path, leader)
    legit = 0
    for what, (path, body) in SMUGGLED.items():
        for how, wire, answers in _attacks(path, body):
            statuses = _exchange(follower.api_addr, worker_tls, wire)
            assert _created(leader) == [], f"{what} / {how} (answered {statuses}) created {_created(leader)}"
            assert statuses, f"{what} / {how}: no answer"
            smuggled = statuses[-1] if answers == 2 else statuses[0]
            assert smuggled in (400, 403), f"{what} / {how}: answered {statuses}"
            assert all(s >= 400 for s in statuses), f"{what} / {how}: answered {statuses}"
            # The next forwarded request (an admin's, on the follower's pooled connection to the
            # leader) gets its own answer.
            legit += 1
            name = f"legit-{legit}"
            created = create_service(follower.api_addr, name, image="nginx:1.27")
            assert created.status_code == 201, created.text
            assert created.json()["name"] == name, f"after {what} / {how}: {created.text}"
            assert created.headers.get("x-warren-forwarded-to") == leader.api_addr
    names = sorted(s["name"] for s in leader.services(consistent=True))
    assert names == sorted(f"legit-{n}" for n in range(1, legit + 1)), names
    assert _created(leader) == []
