"""The store's entry loop (warren.raft_bridge.apply_entries), compiled and pure: one savepoint per
entry, refusals rolled back alone, and the same answers and state from both on the same entries."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from tests.unit.store.log import Log, cluster_with_workers, dump, new_task, status
from warren import _raft_py
from warren.store import commands as c
from warren.store.machine import EntryLoop, Store


@pytest.fixture(params=["python", "cython"])
def loop(request: pytest.FixtureRequest) -> EntryLoop:
    if request.param == "python":
        return _raft_py.apply_entries
    compiled: EntryLoop = request.getfixturevalue("compiled_bridge").apply_entries
    return compiled


def _table(conn: sqlite3.Connection) -> None:
    conn.execute("CREATE TABLE t (k TEXT PRIMARY KEY, v INTEGER)")


def _step(conn: sqlite3.Connection) -> Any:
    def step(index: int, payload: bytes) -> bytes:
        conn.execute("INSERT INTO t (k, v) VALUES (?, ?)", (payload.decode(), index))
        if payload == b"bad":
            raise ValueError("refused after writing")
        if payload == b"fatal":
            raise OSError("disk on fire")
        return b"ok %d" % index

    return step


def _refusal(exc: Exception, index: int) -> bytes | None:
    return None if isinstance(exc, OSError) else b"refused %d: %s" % (index, str(exc).encode())


def test_a_refused_entry_changes_nothing_and_the_batch_goes_on(loop: EntryLoop) -> None:
    conn = sqlite3.connect(":memory:", isolation_level=None)
    _table(conn)
    conn.execute("BEGIN")
    entries = [(1, 1, b"a"), (2, 1, b"bad"), (3, 1, b"a"), (4, 1, b"b")]  # 3: a duplicate key

    def refusal(exc: Exception, index: int) -> bytes | None:
        if isinstance(exc, sqlite3.IntegrityError):
            return b"conflict %d" % index
        return _refusal(exc, index)

    responses = loop(conn, entries, _step(conn), refusal)
    conn.execute("COMMIT")

    assert responses == [b"ok 1", b"refused 2: refused after writing", b"conflict 3", b"ok 4"]
    assert conn.execute("SELECT k, v FROM t ORDER BY k").fetchall() == [("a", 1), ("b", 4)]


def test_an_error_without_a_refusal_propagates_and_leaves_the_transaction_to_the_caller(
    loop: EntryLoop,
) -> None:
    conn = sqlite3.connect(":memory:", isolation_level=None)
    _table(conn)
    conn.execute("BEGIN")
    with pytest.raises(OSError, match="disk on fire"):
        loop(conn, [(1, 1, b"a"), (2, 1, b"fatal"), (3, 1, b"c")], _step(conn), _refusal)
    assert conn.in_transaction
    conn.execute("ROLLBACK")
    assert conn.execute("SELECT count(*) FROM t").fetchone() == (0,)


def test_no_entries_no_responses(loop: EntryLoop) -> None:
    conn = sqlite3.connect(":memory:", isolation_level=None)
    assert loop(conn, [], _step(conn), _refusal) == []


def _entries() -> list[c.Command | bytes]:
    """A batch of every outcome: applied, refused by the handler, by a constraint, malformed, unknown."""
    return [
        c.CreateTasks([new_task("t1", "w1"), new_task("t2", "w2", slot=2)], 1_800_000_010.0),
        status("t1", "running", 1_800_000_011.0, node="w1"),
        status("t2", "running", 1_800_000_011.0, node="w1"),  # not its node: ignored
        c.UpdateService("web", {"replicas": 5}, 1_800_000_012.0),
        c.UpdateService("nope", {"replicas": 5}, 1_800_000_012.0),  # not found
        c.ImportRows("services", [{"id": "svc-x"}]),  # NOT NULL columns missing: a constraint refuses it
        b"not json",
        b'{"v":1,"op":"from.the.future"}',
        b'{"v":9,"op":"task.status","updates":[]}',
        c.SetTaskStatuses([c.TaskStatus("t2", "failed", "boom", 1_800_000_014.0, exit_code=3)]),
        c.RemoveService("web", 1_800_000_015.0),
    ]


def test_both_paths_give_the_same_answers_and_state(tmp_path: Path, compiled_bridge: Any) -> None:
    results = []
    for name, loop in (("python", _raft_py.apply_entries), ("cython", compiled_bridge.apply_entries)):
        (tmp_path / name).mkdir()
        store = Store(str(tmp_path / name), entry_loop=loop)
        store.restore(None)
        log = Log(store)
        cluster_with_workers(log, "w1", "w2")
        answers = log.apply(*_entries())
        results.append((answers, dump(store), store.applied_index))
        store.close()
    assert results[0] == results[1]
    answers = results[0][0]
    assert [("ok" in a, a.get("error")) for a in answers] == [
        (True, None),
        (True, None),
        (True, None),
        (True, None),
        (False, "not_found"),
        (False, "conflict"),
        (False, "invalid"),
        (False, "invalid"),
        (False, "invalid"),
        (True, None),
        (True, None),
    ]
    assert "refused by a constraint" in answers[5]["message"]
