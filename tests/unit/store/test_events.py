"""Cluster events derived from applied commands (warren.store.events): one kind of command at a time,
ids and their order, refused commands, the ring's bounds and its horizon."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.unit.store.log import FOUNDER, T0, Log, cluster_with_workers, new_task, ok
from warren.spec.service import ServiceSpec
from warren.store import commands as c
from warren.store import events as ev
from warren.store.machine import Store


def held(log: Log) -> list[ev.Event]:
    return log.store.events.read().events


def kinds(events: list[ev.Event]) -> list[tuple[str, str, str]]:
    return [(e.type, e.action, e.actor) for e in events]


def since(log: Log, mark: int) -> list[ev.Event]:
    """The events of the entries after log index `mark`."""
    return log.store.events.read((mark, ev.MAX_ORDINAL)).events


def test_cluster_and_node_commands_yield_their_events(log: Log) -> None:
    cluster_with_workers(log, "worker-a")
    assert kinds(held(log)) == [
        ("manager", "joined", FOUNDER.name),
        ("node", "joined", "worker-a"),
        ("service", "created", "web"),
    ]
    mark = log.index
    ok(log.apply(c.SetNodeState("worker-a", "down", T0 + 5))[0])
    ok(log.apply(c.SetNodeState("worker-a", "down", T0 + 6))[0])  # no change: no event
    ok(log.apply(c.SetNodeState("worker-a", "ready", T0 + 7))[0])
    ok(log.apply(c.SetNodeAvailability("worker-a", "drain", T0 + 8))[0])
    ok(log.apply(c.SetNodeAvailability("worker-a", "active", T0 + 9))[0])
    ok(log.apply(c.RemoveNode("worker-a", T0 + 10))[0])
    got = since(log, mark)
    assert kinds(got) == [
        ("node", "down", "worker-a"),
        ("node", "up", "worker-a"),
        ("node", "drained", "worker-a"),
        ("node", "active", "worker-a"),
        ("node", "removed", "worker-a"),
        ("certificate", "revoked", "worker-a"),
    ]
    assert got[0].attributes == {"from": "ready", "to": "down"} and got[0].time == T0 + 5
    assert got[-2].attributes == {"role": "worker", "tasks_failed": 0}


def test_a_manager_joins_in_two_steps(log: Log) -> None:
    cluster_with_workers(log)
    token = c.CreateToken("tm", "manager", "cd" * 32, T0, T0 + 100, False)
    ok(log.apply(token)[0])
    mark = log.index
    ok(log.apply(c.RegisterManager("manager-2", "127.0.0.2:8080", "127.0.0.2:7946", "cd" * 32, T0 + 1))[0])
    ok(log.apply(c.SetNodeState("manager-2", "ready", T0 + 2))[0])
    ok(log.apply(c.RemoveNode("manager-2", T0 + 3))[0])
    assert kinds(since(log, mark))[:3] == [
        ("manager", "joining", "manager-2"),
        ("manager", "joined", "manager-2"),
        ("manager", "removed", "manager-2"),
    ]


def test_task_events_name_service_slot_node_and_reason(log: Log) -> None:
    cluster_with_workers(log, "worker-a")
    mark = log.index
    ok(log.apply(c.CreateTasks([new_task("t1", "worker-a"), new_task("t2", None, 2)], T0 + 3))[0])
    ok(log.apply(c.AssignTasks([c.Assignment("t2", "worker-a", "placed")], T0 + 4))[0])
    ok(
        log.apply(
            c.SetTaskStatuses(
                [
                    c.TaskStatus("t1", "running", "started", T0 + 5, "worker-a"),
                    c.TaskStatus("t1", "running", "", T0 + 6, "worker-a", health="healthy"),  # no move
                    c.TaskStatus("t1", "starting", "", T0 + 6),  # backwards: ignored, no event
                    c.TaskStatus("t2", "failed", "exit 3", T0 + 7, exit_code=3),
                ]
            )
        )[0]
    )
    got = since(log, mark)
    assert [(e.action, e.actor, e.attributes["from"], e.attributes["to"]) for e in got] == [
        ("created", "t1", None, "assigned"),
        ("created", "t2", None, "pending"),
        ("state", "t2", "pending", "assigned"),
        ("state", "t1", "assigned", "running"),
        ("state", "t2", "assigned", "failed"),
    ]
    failed = got[-1]
    assert failed.attributes == {
        "service": "web", "slot": 2, "node": "worker-a", "from": "assigned", "to": "failed",
        "reason": "exit 3", "exit_code": 3,
    }
    assert failed.time == T0 + 7 and "web.2" in failed.message and "exit 3" in failed.message
    # Events of one entry count on: the two updates of the status batch share its index.
    assert [e.id for e in got[-2:]] == [f"{log.index}.0", f"{log.index}.1"]


def test_the_answers_keep_no_event_material(log: Log) -> None:
    cluster_with_workers(log, "worker-a")
    answer = ok(log.apply(c.CreateTasks([new_task("t1", "worker-a")], T0 + 3))[0])
    assert answer == {"created": 1, "skipped": 0}
    answer = ok(log.apply(c.SetTaskStatuses([c.TaskStatus("t1", "running", "", T0 + 4)]))[0])
    assert answer == {"applied": 1, "ignored": 0}
    answer = ok(log.apply(c.SetNodeState("worker-a", "down", T0 + 5))[0])
    assert answer == {"name": "worker-a", "state": "down"}
    assert "_before" not in ok(log.apply(c.SetNodeAvailability("worker-a", "drain", T0 + 6))[0])


def test_service_secret_and_config_events(log: Log) -> None:
    cluster_with_workers(log)
    mark = log.index
    ok(log.apply(c.UpdateService("web", {"replicas": 5}, T0 + 1))[0])
    ok(log.apply(c.UpdateService("web", {"env": {"A": "2"}}, T0 + 2))[0])
    ok(log.apply(c.SetUpdateStatus("web", {"state": "updating", "message": "1/2"}, T0 + 3))[0])
    ok(log.apply(c.SetUpdateStatus("web", None, T0 + 3))[0])  # cleared: nothing to say
    ok(log.apply(c.RollbackService("web", T0 + 4, requested=True))[0])
    ok(log.apply(c.CreateSecret("s1", "db-pass", "c2VhbGVk", T0 + 5))[0])
    ok(log.apply(c.RemoveSecret("db-pass", T0 + 6))[0])
    ok(log.apply(c.CreateConfig("k1", "app-conf", "aGk=", 2, "ab" * 32, T0 + 7))[0])
    ok(log.apply(c.RemoveConfig("app-conf", T0 + 8))[0])
    ok(log.apply(c.RemoveService("web", T0 + 9))[0])
    got = since(log, mark)
    assert kinds(got) == [
        ("service", "scaled", "web"),
        ("service", "updated", "web"),
        ("service", "update-progress", "web"),
        ("service", "rolled-back", "web"),
        ("secret", "created", "db-pass"),
        ("secret", "removed", "db-pass"),
        ("config", "created", "app-conf"),
        ("config", "removed", "app-conf"),
        ("service", "removed", "web"),
    ]
    assert got[0].attributes == {"replicas": 5} and got[1].attributes == {"changed": "env"}
    assert got[2].attributes == {"state": "updating", "message": "1/2"}
    # Names only: never a secret's sealed value or a config's bytes.
    for e in got[4:8]:
        assert e.attributes == {} and "c2VhbGVk" not in e.message and "aGk=" not in e.message


def test_a_refused_command_yields_nothing(log: Log) -> None:
    cluster_with_workers(log)
    mark = log.index
    taken = c.CreateService("svc-9", "web", ServiceSpec(image="nginx"), T0)
    assert log.apply(taken)[0]["error"] == "conflict"
    assert log.apply(c.SetNodeState("nobody", "down", T0))[0]["error"] == "not_found"
    assert since(log, mark) == []


def test_a_note_is_its_event(log: Log) -> None:
    cluster_with_workers(log)
    note = c.ClusterNote("leader", "elected", "manager-1", {"term": 4, "leaderless_ms": 900}, "m elected", T0)
    assert ok(log.apply(note)[0]) == {}
    (event,) = since(log, log.index - 1)
    assert event.to_doc() == {
        "id": f"{log.index}.0", "time": T0, "type": "leader", "action": "elected", "actor": "manager-1",
        "attributes": {"term": 4, "leaderless_ms": 900}, "message": "m elected",
    }


def test_every_manager_derives_the_same_ids(tmp_path: Path) -> None:
    logs = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        store = Store(str(tmp_path / name))
        store.restore(None)
        logs.append(Log(store))
    for log in logs:
        cluster_with_workers(log, "worker-a")
        log.apply(c.CreateTasks([new_task("t1", "worker-a"), new_task("t2", None, 2)], T0 + 3))
    docs = [[e.to_doc() for e in held(log)] for log in logs]
    assert docs[0] == docs[1] and len(docs[0]) == 5
    keys = [e.key for e in held(logs[0])]
    assert keys == sorted(keys) and len(set(keys)) == len(keys)


def test_commands_sharing_an_entry_count_on(log: Log) -> None:
    cluster_with_workers(log)
    entry = log.index + 1
    answers = log.store.apply(
        [
            (entry, 1, c.encode(c.CreateSecret("s1", "a", "eA==", T0))),
            (entry, 1, c.encode(c.CreateSecret("s1", "a", "eA==", T0))),  # refused: a is taken
            (entry, 1, c.encode(c.CreateSecret("s2", "b", "eA==", T0))),
        ]
    )
    assert len(answers) == 3
    assert [e.id for e in since(log, entry - 1)] == [f"{entry}.0", f"{entry}.1"]


def test_a_failed_batch_publishes_nothing(log: Log, monkeypatch: pytest.MonkeyPatch) -> None:
    cluster_with_workers(log)
    before = len(held(log))

    def broken(*_: Any) -> None:
        raise OSError("disk on fire")

    monkeypatch.setattr(log.store, "_changed", lambda: None)
    real = log.store.conn

    class Failing:
        def __getattr__(self, name: str) -> Any:
            return getattr(real, name)

        def execute(self, sql: str, *args: Any) -> Any:
            if sql.startswith("INSERT INTO meta"):
                broken()
            return real.execute(sql, *args)

    monkeypatch.setattr(log.store, "conn", Failing())
    with pytest.raises(OSError):
        log.apply(c.CreateSecret("s1", "a", "eA==", T0))
    assert len(held(log)) == before


# -- the ring -----------------------------------------------------------------------------------------


def event(index: int, at: float = T0, ordinal: int = 0) -> ev.Event:
    return ev.Event(index, ordinal, at, "node", "up", f"n{index}", {}, f"n{index} up")


def test_the_ring_keeps_the_last_n_and_says_what_is_lost() -> None:
    ring = ev.EventRing(max_events=3, max_age_s=1e9, clock=lambda: T0)
    ring.publish([event(i) for i in range(1, 11)])
    assert [e.index for e in ring.read().events] == [8, 9, 10]
    assert (ring.first, ring.last) == ("8.0", "10.0")
    fine = ring.read((7, 0))
    assert fine.lost is None and [e.index for e in fine.events] == [8, 9, 10]
    gone = ring.read((5, 0))
    assert gone.lost is not None and gone.lost["after"] == "5.0" and gone.lost["before"] == "8.0"
    assert "8.0" in gone.lost["message"]


def test_the_ring_forgets_events_older_than_t() -> None:
    now = [T0]
    ring = ev.EventRing(max_events=100, max_age_s=60, clock=lambda: now[0])
    ring.publish([event(1, T0), event(2, T0 + 30)])
    now[0] = T0 + 70
    assert [e.index for e in ring.read().events] == [2]
    assert ring.read(newer_than=T0 - 5).lost is not None
    assert ring.read(newer_than=T0 + 20).lost is None


def test_the_ring_memory_stays_bounded() -> None:
    ring = ev.EventRing(max_events=1000, max_age_s=1e9, clock=lambda: T0)
    for start in range(0, 50_000, 500):
        ring.publish([event(i) for i in range(start + 1, start + 501)])
    assert len(ring) == 1000 and len(ring._keys) == 1000
    size = sys.getsizeof(ring._events) + sys.getsizeof(ring._keys)
    assert size < 100_000


def test_a_restore_starts_the_ring_after_the_snapshot(log: Log, tmp_path: Path) -> None:
    cluster_with_workers(log)
    snap = tmp_path / "snap.db"
    log.store.snapshot(str(snap))
    index = log.index
    log.store.restore(str(snap))
    assert held(log) == []
    assert log.store.events.read((1, 0)).lost is not None
    assert log.store.events.read((index, 0)).lost is not None
    assert log.store.events.read((index, ev.MAX_ORDINAL)).lost is None


def test_a_slow_subscriber_overflows_instead_of_growing() -> None:
    async def main() -> None:
        ring = ev.EventRing(clock=lambda: T0)
        sub = ring.subscribe(limit=5)
        ring.publish([event(i) for i in range(1, 100)])
        assert sub.overflowed and len(sub._queue) == 0
        assert await sub.next_batch(0.01) == []
        sub.close()
        assert ring.subscribers == 0

    asyncio.run(main())


def test_subscribers_wake_on_publish_and_end_on_close() -> None:
    async def main() -> None:
        ring = ev.EventRing(clock=lambda: T0)
        sub = ring.subscribe(limit=10)
        waiting = asyncio.create_task(sub.next_batch(5))
        await asyncio.sleep(0)
        ring.publish([event(1)])
        assert [e.index for e in await waiting] == [1]
        waiting = asyncio.create_task(sub.next_batch(5))
        await asyncio.sleep(0)
        ring.close()
        assert await waiting == [] and sub.closed
        assert ring.subscribe(3).closed

    asyncio.run(main())


@pytest.mark.parametrize(
    ("text", "key"), [("12.0", (12, 0)), ("1.15", (1, 15)), ("x", None), ("1.", None), ("-1.0", None)]
)
def test_ids_parse(text: str, key: tuple[int, int] | None) -> None:
    assert ev.parse_id(text) == key
