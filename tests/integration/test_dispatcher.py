"""The leader's dispatcher with real managers, and HTTP clients acting as workers (no Docker needed):
FakeWorkers (tests/integration/fakeworker.py). The managers run with --manager-only, so the only nodes
the planner can place tasks on are these fake workers (they offer the `process` driver).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.integration.fakeworker import (
    HEARTBEAT_S,
    RESOURCES,
    SLEEPER,
    FakeWorker,
    create_sleepers,
    worker_token,
)
from tests.integration.managers import ManagerCluster, ManagerProc, api, assert_error_body, get_json
from warren.config import OrchestratorSettings
from warren.pki import certs
from warren.pki.join import new_join_key
from warren.spec.ports import MAX_SERVICE_TASKS
from warren.testing.wait import eventually
from warren.worker.endpoints import parse

GRACE_S = 5.0  # OrchestratorSettings.node_down_grace_s (default)


@pytest.fixture
def workers() -> Iterator[list[FakeWorker]]:
    made: list[FakeWorker] = []
    yield made
    for w in made:
        w.stop()


def tasks(addr: str, service: str) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = get_json(addr, f"/v1/services/{service}/tasks")
    return result


def node_state(addr: str, name: str) -> str:
    return str(get_json(addr, f"/v1/nodes/{name}")["state"])


def live(addr: str, service: str) -> list[dict[str, Any]]:
    return [t for t in tasks(addr, service) if t["state"] in ("assigned", "starting", "running")]


@pytest.fixture
def one(make_managers: Callable[..., ManagerCluster]) -> ManagerProc:
    return make_managers().init()


# -- joining -----------------------------------------------------------------------------------------


def test_a_worker_joins_with_a_worker_token_only(one: ManagerProc) -> None:
    addr = one.api_addr
    token = worker_token(addr)
    with api(addr, 10) as client:
        r = client.post(
            "/v1/workers/join",
            json={"token": token, "addr": "127.0.0.9", "resources": RESOURCES, "csr": new_join_key().csr_pem},
        )
        assert r.status_code == 201, r.text
        doc = r.json()
        assert set(doc) == {
            "name", "secret", "cluster_id", "heartbeat_period_s", "certificate", "ca", "cert_expires_at"
        }
        # The certificate names the node and its role, for the key in the CSR.
        who = certs.identity(certs.load_cert(doc["certificate"].encode()))
        assert (who.name, who.role, who.cluster_id) == (doc["name"], "worker", one.info()["cluster_id"])
        assert doc["name"].startswith("worker-") and len(doc["name"]) == len("worker-") + 6
        assert len(doc["secret"]) >= 43 and doc["heartbeat_period_s"] == HEARTBEAT_S
        assert doc["cluster_id"] == one.info()["cluster_id"]
        node = get_json(addr, f"/v1/nodes/{doc['name']}")
        assert node["role"] == "worker" and node["state"] == "ready" and node["addr"] == "127.0.0.9"
        assert node["resources"]["drivers"] == ["process"]
        assert doc["secret"] not in r.text.replace(doc["secret"], "", 1), "the secret is shown once"
        assert "secret" not in str(node) and doc["secret"] not in one.errors(), "secret leaked"

        csr = new_join_key().csr_pem
        manager_token = client.post("/v1/cluster/join-tokens", json={"role": "manager"}).json()["token"]
        join = {"addr": "127.0.0.9", "csr": csr}
        refused = client.post("/v1/workers/join", json={"token": manager_token, **join})
        assert "manager join token" in assert_error_body(refused, 401, "unauthorized")["message"]
        for garbage in ("nope", "SWMTKN-1-" + "a" * 50, "SWMTKN-1-" + "A" * 50):
            refused = client.post("/v1/workers/join", json={"token": garbage, **join})
            assert_error_body(refused, 401, "unauthorized")
        short_doc = client.post("/v1/cluster/join-tokens", json={"role": "worker", "ttl_s": 0.3}).json()
        short = short_doc["token"]
        eventually(lambda: time.time() > short_doc["expires_at"] + 0.05, 5, "the short-lived token to expire")
        expired = client.post("/v1/workers/join", json={"token": short, **join})
        assert "expired" in assert_error_body(expired, 401, "unauthorized")["message"]
        assert token not in one.errors() and short not in one.errors(), "a token was logged"
    workers = one.info()
    assert workers["workers"] == 1 and [w["name"] for w in workers["worker_nodes"]] == [doc["name"]]


def test_bad_secrets_and_bad_bodies_are_refused(one: ManagerProc) -> None:
    addr = one.api_addr
    w = FakeWorker.join([addr], worker_token(addr))
    other = FakeWorker.join([addr], worker_token(addr))
    with api(addr, 10) as client:
        body = {"node": w.name, "known": None}
        for headers in (
            {},
            {"Authorization": "Bearer wrong"},
            {"Authorization": w.secret},  # no scheme
            {"Authorization": f"Basic {w.secret}"},
            other.headers,  # another worker's secret
        ):
            r = client.post("/v1/dispatcher/session", json=body, headers=headers)
            message = assert_error_body(r, 401, "unauthorized")["message"]
            assert w.secret not in message
        r = client.post(
            "/v1/dispatcher/session", json={"node": "worker-nobody", "known": None}, headers=w.headers
        )
        assert_error_body(r, 401, "unauthorized")
        r = client.post("/v1/dispatcher/status", json={"node": w.name, "updates": []}, headers=other.headers)
        assert_error_body(r, 401, "unauthorized")
        r = client.post("/v1/dispatcher/logs/abcdef", content=b"x", headers=w.headers)
        assert_error_body(r, 410, "gone")
        for content in (b"[1]", b'"x"', b"null", b"{", b""):
            r = client.post(
                "/v1/dispatcher/session",
                content=content,
                headers={**w.headers, "content-type": "application/json"},
            )
            assert_error_body(r, 400, "invalid")
        for bad in (
            {"node": w.name, "known": 5},
            {"node": 5},
            {"node": w.name, "bogus": 1},
            {"node": w.name, "labels": {"k": 1}},
            {"node": w.name, "resources": {"cpus": "many"}},
        ):
            assert_error_body(
                client.post("/v1/dispatcher/session", json=bad, headers=w.headers), 400, "invalid"
            )
        for bad_updates in (
            "x",
            [{"task_id": "t"}],
            [{"task_id": "t", "state": "resurrected", "at": 1.0}],
            [{"task_id": "t", "state": "running", "at": "now"}],
            [{"task_id": "t", "state": "running", "at": 1.0, "exit_code": "0"}],
        ):
            r = client.post(
                "/v1/dispatcher/status", json={"node": w.name, "updates": bad_updates}, headers=w.headers
            )
            assert_error_body(r, 400, "invalid")
        for bad_join in ({"token": 5, "addr": "x"}, {"token": "t"}, {"token": "t", "addr": "bad host!"}):
            r = client.post("/v1/workers/join", json=bad_join)
            assert_error_body(r, (400, 401))
    assert one.alive
    assert w.secret not in one.errors() and other.secret not in one.errors()


# -- sessions, status, replacement --------------------------------------------------------------------


def test_session_long_poll_gets_assignments_and_status_is_committed(
    one: ManagerProc, workers: list[FakeWorker]
) -> None:
    addr = one.api_addr
    w = FakeWorker.join([addr], worker_token(addr))
    first = w.session()
    assert first["assignments"] == [] and first["log_requests"] == []
    # Nothing changes: the call is held for about the heartbeat period, then answered with null.
    start = time.monotonic()
    idle = w.session()
    assert HEARTBEAT_S * 0.8 <= time.monotonic() - start < HEARTBEAT_S + 2
    assert idle["assignments"] is None and idle["digest"] == first["digest"]

    # A held call is answered as soon as the planner places a task on this worker.
    result: dict[str, Any] = {}
    held = threading.Thread(target=lambda: result.update(w.session()))
    held.start()
    eventually(lambda: one.metrics().get("warren_dispatcher_sessions_held", 0) >= 1, 10, "the call held")
    start = time.monotonic()
    create_sleepers(addr, "web")
    held.join(10)
    assert time.monotonic() - start < HEARTBEAT_S * 0.8, "answered by the hold timeout, not the change"
    (task,) = result["assignments"]
    assert (
        task["service_name"] == "web" and task["desired_state"] == "running" and task["state"] == "assigned"
    )
    assert task["spec"]["command"] == SLEEPER["command"] and task["slot"] == 1

    r = w.status(task["task_id"], "starting")
    assert r.status_code == 200 and r.json() == {"accepted": 1}, r.text
    assert tasks(addr, "web")[0]["state"] == "starting", "answered 200 before the update committed"
    r = w.status(task["task_id"], "running", container_id="pid-123")
    assert r.status_code == 200, r.text
    (doc,) = tasks(addr, "web")
    assert doc["state"] == "running" and doc["container_id"] == "pid-123" and doc["node"] == w.name
    assert doc["name"] == "web.1" and doc["started_at"] is not None
    # A step back is ignored, not an error (a late resend); a task on another node is not this one's.
    assert w.status(task["task_id"], "starting").status_code == 200
    assert tasks(addr, "web")[0]["state"] == "running"
    intruder = FakeWorker.join([addr], worker_token(addr))
    assert intruder.status(task["task_id"], "failed").status_code == 200
    assert tasks(addr, "web")[0]["state"] == "running"
    listed = get_json(addr, f"/v1/tasks?node={w.name}")
    assert [t["id"] for t in listed] == [task["task_id"]]
    assert get_json(addr, f"/v1/tasks?node={intruder.name}") == []


def test_a_silent_worker_is_written_down_and_its_tasks_run_elsewhere(
    one: ManagerProc, workers: list[FakeWorker]
) -> None:
    addr = one.api_addr
    token = worker_token(addr)
    a = FakeWorker.join([addr], token)
    workers.append(a.keep_alive())
    create_sleepers(addr, "web", replicas=2)
    eventually(lambda: len(a.task_ids()) == 2, 10, "both tasks on the only worker")
    b = FakeWorker.join([addr], token)
    workers.append(b.keep_alive())
    time.sleep(HEARTBEAT_S)  # b is alive for a while: it is not written down meanwhile
    assert node_state(addr, b.name) == "ready"

    a.stop()
    stopped = time.monotonic()
    eventually(lambda: node_state(addr, a.name) == "down", GRACE_S + 5, f"{a.name} written down")
    assert time.monotonic() - stopped >= GRACE_S - HEARTBEAT_S - 0.5, "written down before its grace"
    assert node_state(addr, b.name) == "ready"
    eventually(lambda: len(b.task_ids()) == 2, 10, "the tasks replaced on the live worker")
    old = [t for t in tasks(addr, "web") if t["node"] == a.name]
    assert len(old) == 2 and all(t["state"] == "failed" for t in old), old
    assert {t["node"] for t in live(addr, "web")} == {b.name}
    assert one.metrics()["warren_dispatcher_nodes_down_total"] == 1

    # The silent worker calls again: ready, and it is told its tasks are gone.
    back = a.session()
    assert node_state(addr, a.name) == "ready"
    assert back["assignments"] == []


def test_a_removed_worker_loses_its_session_and_its_tasks_are_replaced(
    one: ManagerProc, workers: list[FakeWorker]
) -> None:
    addr = one.api_addr
    token = worker_token(addr)
    a = FakeWorker.join([addr], token)
    b = FakeWorker.join([addr], token)
    workers += [a.keep_alive(), b.keep_alive()]
    create_sleepers(addr, "web", replicas=2)
    eventually(lambda: len(a.task_ids()) == 1 and len(b.task_ids()) == 1, 10, "one task on each worker")
    with api(addr, 10) as client:
        r = client.post(f"/v1/nodes/{a.name}/availability", json={"availability": "drain"})
        assert r.status_code == 200 and r.json()["availability"] == "drain", r.text
        eventually(lambda: not a.task_ids() and len(b.task_ids()) == 2, 10, "the drained worker's task moved")
        assert client.post(f"/v1/nodes/{a.name}/availability", json={"availability": "x"}).status_code == 400
        r = client.post(f"/v1/nodes/{a.name}/availability", json={"availability": "active"})
        assert r.status_code == 200 and r.json()["availability"] == "active"
        r = client.delete(f"/v1/nodes/{b.name}")
        assert r.status_code == 200, r.text
    eventually(lambda: len(a.task_ids()) == 2, 10, "the removed worker's tasks replaced")
    b.stop()
    with api(addr, 10) as client:
        r = client.post("/v1/dispatcher/session", json={"node": b.name, "known": None}, headers=b.headers)
    assert_error_body(r, 401, "unauthorized")


# -- logs --------------------------------------------------------------------------------------------


def test_logs_are_relayed_from_the_worker_to_the_client(one: ManagerProc, workers: list[FakeWorker]) -> None:
    addr = one.api_addr
    w = FakeWorker.join([addr], worker_token(addr))
    workers.append(w.keep_alive())
    create_sleepers(addr, "web", replicas=2)
    eventually(lambda: len(w.task_ids()) == 2, 10, "tasks assigned")
    with api(addr, 10) as client:
        r = client.get("/v1/services/web/logs")
        assert_error_body(r, 409, "conflict")  # no container reported yet
        assert_error_body(client.get("/v1/services/nope/logs"), 404, "not_found")
        assert_error_body(client.get("/v1/services/web/logs?task=t-nope"), 404, "not_found")
    for i, task_id in enumerate(sorted(w.task_ids())):
        assert w.status(task_id, "running", container_id=f"c{i}").status_code == 200

    def answer_log_requests() -> None:
        done: set[str] = set()
        deadline = time.monotonic() + 10
        while len(done) < 2 and time.monotonic() < deadline:
            for req in list(w.log_requests):
                if req["id"] in done:
                    continue
                done.add(req["id"])
                assert req["follow"] is False and req["tail"] == 10
                with api(addr, 10) as client:
                    text = f"hello from {req['container_id']}\nsecond line of {req['container_id']}\n"
                    for part, end in ((text[:8], False), (text[8:], True)):
                        headers = {**w.headers, "content-type": "application/octet-stream"}
                        if end:
                            headers["X-Warren-Log-End"] = "1"
                        r = client.post(
                            f"/v1/dispatcher/logs/{req['id']}", content=part.encode(), headers=headers
                        )
                        assert r.status_code == 200, r.text
                    late = client.post(f"/v1/dispatcher/logs/{req['id']}", content=b"x", headers=w.headers)
                    assert_error_body(late, 410, "gone")
            time.sleep(0.05)  # the fake worker's own pace between two looks at its session's answers

    helper = threading.Thread(target=answer_log_requests)
    helper.start()
    with api(addr, 15) as client:
        r = client.get("/v1/services/web/logs?tail=10")
    helper.join(15)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain"), r.text
    lines = sorted(r.text.splitlines())
    assert lines == [
        "web.1 | hello from c0",
        "web.1 | second line of c0",
        "web.2 | hello from c1",
        "web.2 | second line of c1",
    ] or lines == [
        "web.1 | hello from c1",
        "web.1 | second line of c1",
        "web.2 | hello from c0",
        "web.2 | second line of c0",
    ], r.text


# -- through followers and across failover -------------------------------------------------------------


@pytest.fixture
def three(make_managers: Callable[..., ManagerCluster]) -> ManagerCluster:
    cluster = make_managers()
    cluster.form(3)
    return cluster


def test_sessions_through_a_follower_and_a_fresh_grace_after_leader_kill(
    three: ManagerCluster, workers: list[FakeWorker]
) -> None:
    leader = three.leader()
    followers = three.followers(leader)
    via = followers[0].api_addr
    token = worker_token(via)
    a = FakeWorker.join([via], token)  # joined through a follower
    # A held session through a follower: answered after the hold, with the leader's answer.
    a.session(via)
    start = time.monotonic()
    held = a.session(via)
    assert HEARTBEAT_S * 0.8 <= time.monotonic() - start < HEARTBEAT_S + 2
    assert held["assignments"] is None
    with api(via) as client:
        r = client.post("/v1/dispatcher/session", json={"node": a.name, "known": a.digest}, headers=a.headers)
        assert r.headers.get("x-warren-forwarded-to") == leader.api_addr

        # Followed logs are served by the leader only: a follower redirects the client there.
        r = client.get("/v1/services/web/logs?follow=true", follow_redirects=False)
    assert r.status_code == 307 and r.headers["location"].startswith(f"https://{leader.api_addr}/v1/"), r

    everyone = [m.api_addr for m in three.managers]
    b = FakeWorker.join(everyone, token)
    a.managers = [m.api_addr for m in followers] + [leader.api_addr]
    workers += [a.keep_alive(), b.keep_alive()]
    create_sleepers(via, "web", replicas=2)
    eventually(lambda: len(a.task_ids()) == 1 and len(b.task_ids()) == 1, 10, "one task on each worker")

    leader.kill()
    survivors = [m for m in three.managers if m is not leader]
    new = three.leader(survivors)
    eventually(lambda: "leader services started" in new.errors(), 10, "the new leader's services")
    # The workers were last heard by the dead leader; the new one must not write them down. Watch for
    # longer than the grace, while they keep calling.
    before = {w.name: w.answers for w in (a, b)}
    deadline = time.monotonic() + GRACE_S + 2 * HEARTBEAT_S
    while time.monotonic() < deadline:
        states = {n["name"]: n["state"] for n in get_json(new.api_addr, "/v1/nodes") if n["role"] == "worker"}
        assert states == {a.name: "ready", b.name: "ready"}, states
        time.sleep(0.25)  # the behaviour under test: nobody is written down all this while
    assert all(w.answers > before[w.name] for w in (a, b)), "the workers did not reach the new leader"
    assert new.metrics().get("warren_dispatcher_nodes_down_total", 0) == 0
    assert {t["node"] for t in live(new.api_addr, "web")} == {a.name, b.name}
    assert len(live(new.api_addr, "web")) == 2, "tasks were replaced although no worker went down"
    with contextlib.suppress(Exception):
        a.stop()


def test_a_worker_that_asks_is_sent_the_service_endpoints_and_woken_by_their_change(
    one: ManagerProc, workers: list[FakeWorker]
) -> None:
    """The manager side of service discovery (issue 17) over real HTTP: `known_endpoints` in the body
    gets `endpoints` in the answer, and a held call returns when a task starts running."""
    addr = one.api_addr
    w = FakeWorker.join([addr], worker_token(addr), addr="127.0.0.42")

    def call(**extra: Any) -> dict[str, Any]:
        with api(addr, 10) as client:
            r = client.post("/v1/dispatcher/session", json={"node": w.name, "known": w.digest, **extra},
                            headers=w.headers)
        assert r.status_code == 200, r.text
        doc: dict[str, Any] = r.json()
        w.digest = doc["digest"]
        return doc

    create_sleepers(addr, "api")
    create_sleepers(addr, "batch", discovery=False)
    placed: list[dict[str, Any]] = []

    def api_placed() -> bool:
        w.digest = None  # answered at once, with every assignment
        answer = call()
        assert answer["endpoints"] is None  # a call without known_endpoints (an older worker's)
        placed[:] = [a for a in answer["assignments"] or [] if a["service_name"] == "api"]
        return bool(placed)

    eventually(api_placed, 10, "the api task placed on the worker")
    (task,) = placed
    first = call(known_endpoints=None)  # it has none: answered at once
    assert first["endpoints"]["services"] == {"api": {"healthy": [], "tasks": []}}
    known = first["endpoints"]["digest"]

    result: dict[str, Any] = {}
    held = threading.Thread(target=lambda: result.update(call(known_endpoints=known)))
    held.start()
    eventually(lambda: one.metrics().get("warren_dispatcher_sessions_held", 0) >= 1, 10, "the call held")
    start = time.monotonic()
    assert w.status(task["task_id"], "running", container_id="pid-1").status_code == 200
    held.join(10)
    assert time.monotonic() - start < HEARTBEAT_S * 0.8, "answered by the hold timeout, not the change"
    api_endpoints = result["endpoints"]["services"]["api"]
    assert api_endpoints["healthy"] == ["127.0.0.42"]
    assert api_endpoints["tasks"] == [{"task_id": task["task_id"], "slot": 1, "node": w.name,
                                       "addr": "127.0.0.42", "healthy": True}]


def test_a_service_past_the_endpoints_bound_is_listed_cut_and_its_worker_is_held(
    one: ManagerProc, workers: list[FakeWorker]
) -> None:
    """A service of more tasks than a worker takes per service (1,024) used to get the whole table
    refused by every worker, which then asked again with its old digest and was answered at once, in a
    loop. The leader lists at most the bound, the worker's parser takes it, and a call with that
    table's digest is held; a change of the endpoints alone comes no sooner than endpoints_interval_s
    after the table before."""
    addr = one.api_addr
    w = FakeWorker.join([addr], worker_token(addr), addr="127.0.0.42").keep_alive()
    workers.append(w)
    count = MAX_SERVICE_TASKS + 76
    # With a health check: a task's health alone then changes the endpoints (its `healthy`), and not
    # the worker's assignments, which a task that ends would (its replacement) and answer at once.
    create_sleepers(addr, "many", replicas=count, health={"kind": "cmd", "cmd": ["true"]})
    eventually(lambda: len(w.task_ids()) == count, 30, f"{count} tasks assigned to the worker")
    ids = sorted(w.task_ids())
    updates = [{"task_id": t, "state": "running", "message": "", "at": time.time()} for t in ids[:-1]]
    with api(addr, 30) as client:
        r = client.post("/v1/dispatcher/status", json={"node": w.name, "updates": updates}, headers=w.headers)
    assert r.status_code == 200, r.text

    def call(known_endpoints: str | None) -> dict[str, Any]:
        with api(addr, 10) as client:
            r = client.post("/v1/dispatcher/session", headers=w.headers,
                            json={"node": w.name, "known": w.digest, "known_endpoints": known_endpoints})
        assert r.status_code == 200, r.text
        doc: dict[str, Any] = r.json()
        return doc

    # Taken before the call: the leader dates the table when it answers, after this and before the
    # answer arrives here (one monotonic clock for both processes).
    sent = time.monotonic()
    first = call(None)
    table = parse(first["endpoints"])  # what a worker takes
    assert len(table.services["many"].tasks) == MAX_SERVICE_TASKS
    assert table.services["many"].task_addrs == ("127.0.0.42",)

    result: dict[str, Any] = {}
    held = threading.Thread(target=lambda: result.update(call(table.digest)))
    held.start()
    eventually(lambda: one.metrics().get("warren_dispatcher_sessions_held", 0) >= 1, 10, "the call held")
    # A listed task turns healthy: the table changes, the assignments do not.
    first_listed = table.services["many"].tasks[0]
    assert not first_listed.healthy
    assert w.status(first_listed.task_id, "running", health="healthy").status_code == 200
    held.join(10)
    assert not held.is_alive()
    interval = OrchestratorSettings().endpoints_interval_s
    assert result["assignments"] is None, "answered for the endpoints alone"
    assert time.monotonic() - sent >= interval, "not sooner than endpoints_interval_s after the last table"
    changed = parse(result["endpoints"])
    (now,) = [t for t in changed.services["many"].tasks if t.task_id == first_listed.task_id]
    assert now.healthy and changed.services["many"].healthy == ("127.0.0.42",)
