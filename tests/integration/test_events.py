"""The cluster event stream on real managers: followed through the leader, it shows a service's and
its tasks' events; the leader is killed, the client resumes on a survivor from its last id (no event
twice, none lost: the survivor's own ring agrees) and sees the new leader elected with its term and
how long the cluster went without one, and the old leader noted unreachable. A manager stopping with
streams open does not hang."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx

from tests.integration.fakeworker import FakeWorker, create_sleepers, worker_token
from tests.integration.managers import ManagerCluster, api, cli, create_service, credentials
from warren.client import ManagerClient
from warren.config import ClientSettings
from warren.store.events import parse_id
from warren.testing.wait import eventually


class Follower(threading.Thread):
    """`follow_events` in a thread: every item it yields, in order."""

    def __init__(self, client: ManagerClient) -> None:
        super().__init__(daemon=True)
        self.client = client
        self.items: list[tuple[str, dict[str, Any]]] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            for item in self.client.follow_events():
                self.items.append(item)
        except BaseException as exc:  # the cluster went away at the end of the test
            self.error = exc

    def events(self) -> list[dict[str, Any]]:
        return [body for kind, body in list(self.items) if kind == "event"]

    def find(self, **want: Any) -> dict[str, Any] | None:
        for e in self.events():
            if all(e.get(k) == v for k, v in want.items()):
                return e
        return None


def tasks(follower: Follower, action: str, n: int, **attrs: Any) -> list[dict[str, Any]] | None:
    """The followed task events of `action` whose attributes have `attrs`, once there are `n`."""
    found = [
        e
        for e in follower.events()
        if e["type"] == "task"
        and e["action"] == action
        and all(e["attributes"].get(k) == v for k, v in attrs.items())
    ]
    return found if len(found) == n else None


def test_events_follow_a_failover_without_duplicates_or_loss(
    make_managers: Callable[..., ManagerCluster],
) -> None:
    c = make_managers()
    c.form(3)
    leader = c.leader()
    followers = c.followers(leader)
    term = int(leader.metrics()["warren_raft_term"])
    # Through the leader first, then the others: the client resumes on the next one.
    addrs = ",".join(m.api_addr for m in (leader, *followers))
    client = ManagerClient(addrs, credentials=credentials(leader.api_addr),
                           settings=ClientSettings(retry_deadline_s=20.0, events_idle_s=5.0))
    follower = Follower(client)
    follower.start()

    # Every manager's join is in the log: the follower's first events say so.
    eventually(lambda: follower.find(type="manager", action="joined", actor=followers[-1].name), 10,
               "the last manager's join among the followed events")
    assert follower.find(type="leader", action="elected", actor=leader.name) is not None

    # A worker (HTTP calls: tests/integration/fakeworker.py) joins; web's tasks are placed on it.
    worker = FakeWorker.join([m.api_addr for m in c.managers], worker_token(leader.api_addr)).keep_alive()
    try:
        eventually(lambda: follower.find(type="node", action="joined", actor=worker.name), 10, "the worker")
        create_sleepers(followers[0].api_addr, "web", replicas=2)
        eventually(lambda: follower.find(type="service", action="created", actor="web"), 10, "web created")
        eventually(lambda: len(worker.task_ids()) == 2, 10, "web's two tasks on the worker")
        for task_id in worker.task_ids():
            assert worker.status(task_id, "running").status_code == 200
        running = eventually(lambda: tasks(follower, "state", to="running", n=2), 10, "web's tasks running")
        assert {e["actor"] for e in running} == worker.task_ids()
        for e in running:
            a = e["attributes"]
            want = ("web", worker.name, "assigned", "running")
            assert (a["service"], a["node"], a["from"], a["reason"]) == want, e
        created = tasks(follower, "created", n=2)
        assert created is not None and {e["actor"] for e in created} == worker.task_ids()
        assert {e["attributes"]["slot"] for e in created} == {1, 2}
        with api(followers[1].api_addr) as http:
            assert http.patch("/v1/services/web", json={"replicas": 3}).status_code == 200
        scaled = eventually(lambda: follower.find(type="service", action="scaled", actor="web"), 10, "scaled")
        assert scaled["attributes"] == {"replicas": 3}
        eventually(lambda: tasks(follower, "created", slot=3, n=1), 10, "web's third task")
    finally:
        worker.stop()

    # kill -9 the leader the client follows through.
    before = len(follower.events())
    killed_at = time.monotonic()
    leader.kill()
    new = c.leader(among=followers)
    elected = eventually(
        lambda: follower.find(type="leader", action="elected", actor=new.name), 20, "the new leader's event"
    )
    seen_after_s = time.monotonic() - killed_at
    attrs = elected["attributes"]
    assert attrs["node"] == new.name and isinstance(attrs["term"], int)
    assert attrs["term"] > term
    assert isinstance(attrs["leaderless_ms"], int) and 0 < attrs["leaderless_ms"] < seen_after_s * 1000 + 1000
    # The new leader's replication does not reach the old one: noted too.
    gone = eventually(
        lambda: follower.find(type="manager", action="unreachable", actor=leader.name), 10,
        "the old leader noted unreachable",
    )
    assert gone["attributes"]["term"] == attrs["term"]
    reconnects = [body for kind, body in list(follower.items) if kind == "reconnect"]
    assert reconnects and reconnects[0]["manager"] == leader.api_addr, follower.items
    # Writes after the failover arrive on the resumed stream.
    assert create_service(new.api_addr, "after").status_code == 201
    eventually(lambda: follower.find(type="service", action="created", actor="after"), 10, "after created")
    assert len(follower.events()) > before

    # The command line: one JSON object per line, filtered.
    out = cli("events", "--since", "10m", "--filter", "type=service", "-o", "json", "--manager", new.api_addr)
    lines = [json.loads(line) for line in out.ok().stdout.splitlines()]
    want = [("created", "web"), ("scaled", "web"), ("created", "after")]
    assert [(e["action"], e["actor"]) for e in lines] == want, lines
    table = cli("events", "--filter", "type=leader", "--manager", new.api_addr).ok().stdout
    assert f"leader elected {new.name} (" in table and "leaderless_ms=" in table, table

    # No event twice, in log order; and none lost: a survivor's ring holds the same ids in between.
    ids = [e["id"] for e in follower.events()]
    keys = [parse_id(i) for i in ids]
    assert len(set(ids)) == len(ids), ids
    assert keys == sorted(keys), ids  # type: ignore[type-var]
    with api(new.api_addr) as http:
        held = http.get("/v1/events", params={"since": ids[0], "limit": "10000"}).json()
    assert held["lost"] is None
    between = [e["id"] for e in held["events"] if parse_id(e["id"]) <= keys[-1]]  # type: ignore[operator]
    assert between == ids[1:]
    assert not [kind for kind, _ in follower.items if kind == "gap"]

    # A manager stopping with a followed stream open ends the stream at once instead of waiting out
    # its shutdown grace (5 s) for it.
    other = next(m for m in followers if m is not new)
    ended = threading.Event()

    def read() -> None:
        with api(other.api_addr, timeout=30) as http, http.stream(
            "GET", "/v1/events", params={"follow": "true"}
        ) as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            opened.set()
            try:
                for _ in stream.iter_bytes():
                    pass
            except httpx.HTTPError:
                pass
        ended.set()

    opened = threading.Event()
    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    assert opened.wait(10)
    started = time.monotonic()
    other.stop()
    stopped_s = time.monotonic() - started
    assert ended.wait(5)
    assert stopped_s < 3.0, f"stopping took {stopped_s:.1f} s with an event stream open"
