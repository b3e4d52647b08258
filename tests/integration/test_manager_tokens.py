"""`warren manager join` against a real cluster: which tokens are refused, how, and that none is logged."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable

from tests.integration.managers import ManagerCluster, ManagerProc, api, assert_error_body, cli
from warren.pki.join import new_join_key
from warren.testing.wait import eventually


def refused_join(c: ManagerCluster, token: str, via: ManagerProc) -> str:
    """Run a join that must be refused: exit status 1, one clear line on stderr, no process left."""
    m = c.new_manager().join(token, via.api_addr, wait=False)
    code = m.wait_exit(30)
    if code is None:
        m.kill()
    assert code == 1, f"join with a bad token exited {code}\n{m.log_tail()}"
    err = m.errors().strip()
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("warren: "), f"expected one error line, got:\n{err}"
    assert "Traceback" not in err
    assert "✓ Manager started" not in m.output()
    return lines[0]


def test_join_tokens_are_checked_and_never_logged(make_managers: Callable[..., ManagerCluster]) -> None:
    c = make_managers()
    founder = c.init()
    tokens: list[str] = []

    # Garbage, a well-formed token the cluster never issued (with its CA's digest), and one that pins
    # another CA: that one is refused by the joining node itself, before it sends anything.
    with api(founder.api_addr) as client:
        digest = client.get("/v1/ca").raise_for_status().json()["digest"]
    garbage = "not-a-token-" + secrets.token_hex(8)
    alphabet = "0123456789abcdefghijklmnopqrstuvwxyz"
    secret = "".join(secrets.choice(alphabet) for _ in range(25))
    unknown = f"SWMTKN-1-{digest}-{secret}"
    other_ca = f"SWMTKN-1-{'0' * 50}-{secret}"
    tokens += [garbage, unknown, other_ca]
    assert "invalid join token" in refused_join(c, garbage, founder)
    assert "invalid join token" in refused_join(c, unknown, founder)
    assert "does not match the join token's digest" in refused_join(c, other_ca, founder)
    # The API says the same with a 401.
    with api(founder.api_addr) as client:
        response = client.post(
            "/v1/managers/join",
            json={
                "token": unknown,
                "api_addr": "127.0.0.1:1",
                "raft_addr": "127.0.0.1:2",
                "csr": new_join_key().csr_pem,
            },
        )
    assert_error_body(response, 401, "unauthorized")

    # An expired token (valid for 1 s).
    with api(founder.api_addr) as client:
        response = client.post("/v1/cluster/join-tokens", json={"role": "manager", "ttl_s": 1})
    assert response.status_code == 201, response.text
    short = response.json()
    tokens.append(short["token"])
    eventually(lambda: time.time() > short["expires_at"] + 0.05, 5, "the 1 s token to expire")
    assert "expired" in refused_join(c, short["token"], founder)

    # Rotation: A issued, then B with --rotate; A is refused as rotated, B admits a manager.
    a = cli("cluster", "join-token", "manager", "-q", "--manager", founder.api_addr).ok().stdout.strip()
    b = (
        cli("cluster", "join-token", "manager", "--rotate", "-q", "--manager", founder.api_addr)
        .ok()
        .stdout.strip()
    )
    tokens += [a, b]
    assert a != b
    assert "rotated" in refused_join(c, a, founder)
    joined = c.new_manager().join(b, founder.api_addr)
    assert "Raft quorum: 2/2 managers (needs 2 for majority)" in joined.output(), joined.output()

    # A worker token does not admit a manager (asked through the follower: forwarded to the leader).
    worker = cli("cluster", "join-token", "worker", "-q", "--manager", joined.api_addr).ok().stdout.strip()
    tokens.append(worker)
    assert "worker join token" in refused_join(c, worker, joined)

    # Eight refusals later the cluster is intact: two managers, both ready.
    info = founder.info()
    assert [m["status"] for m in info["managers"] if m["role"] in ("leader", "follower")] == [
        "ready",
        "ready",
    ]

    # No token appears in any log or output of any manager, refused joiners included.
    for m in c.managers:
        text = m.all_output()
        for token in tokens:
            assert token not in text, f"{m.label}'s logs contain a join token ({token[:12]}...)"
