"""A damaged worker.db or manager state file (bytes overwritten) is moved aside at start, with a WARNING
that says why, and the node starts from what the cluster still has; a file that cannot be read for
another reason (not a file, I/O error) stops it with that error and nothing is thrown away."""

from __future__ import annotations

import logging
import os
import sqlite3
from pathlib import Path

import pytest

from warren import sqlitefile
from warren.errors import CorruptStateError, StorageError
from warren.spec.service import ServiceSpec
from warren.store import commands as c
from warren.store.machine import Store
from warren.worker.cache import LocalTask, StatusUpdate, WorkerCache

PAGE = 4096
T0 = 1_800_000_000.0


def overwrite(path: Path, offset: int, length: int = 16) -> None:
    """Overwrite `length` bytes at `offset` with 0xff, as a failing disk or a stray write would."""
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(b"\xff" * length)


# Where the bytes go: the file header (SQLite: "file is not a database") or a b-tree page's header
# in the middle of the file (the integrity check: "database disk image is malformed").
DAMAGE = {"header": 0, "page": 3 * PAGE}


def filled_worker_db(data_dir: Path) -> None:
    cache = WorkerCache.open(str(data_dir))
    docs = [{"task_id": f"task-{i}", "spec": {"image": "x" * 100}} for i in range(200)]
    cache.save_assignments("digest-1", docs)
    update = StatusUpdate("task-1", "running", "", T0)
    cache.put_local(LocalTask("task-1", "process", "c1", "running"), update)
    cache.close()
    assert os.path.getsize(data_dir / "worker.db") > 4 * PAGE


@pytest.mark.parametrize("where", DAMAGE)
def test_a_damaged_worker_db_is_moved_aside_and_the_worker_starts_empty(
    tmp_path: Path, where: str, caplog: pytest.LogCaptureFixture
) -> None:
    filled_worker_db(tmp_path)
    # The worker's identity and certificates live beside it, in files of their own.
    (tmp_path / "node.json").write_text('{"name": "w1"}')
    (tmp_path / "tls").mkdir()
    (tmp_path / "tls" / "node.pem").write_text("cert")
    overwrite(tmp_path / "worker.db", DAMAGE[where])
    damaged = (tmp_path / "worker.db").read_bytes()

    cache = WorkerCache.open(str(tmp_path))
    assert cache.assignments() == (None, {}) and cache.local_tasks() == {} and cache.pending() == []
    cache.save_assignments("digest-2", [{"task_id": "task-9"}])  # and it works
    cache.close()

    (aside,) = tmp_path.glob("worker.db.damaged-*[0-9TZ]")
    assert aside.read_bytes() == damaged, "the damaged bytes are kept, not deleted"
    assert (tmp_path / "node.json").read_text() == '{"name": "w1"}'
    assert (tmp_path / "tls" / "node.pem").read_text() == "cert"
    (record,) = [r for r in caplog.records if "moved aside" in r.getMessage()]
    assert record.levelno == logging.WARNING
    assert ("not a database" if where == "header" else "malformed") in record.getMessage()
    assert str(aside) in record.getMessage()


def test_a_worker_db_that_cannot_be_read_stops_the_worker_and_is_kept(tmp_path: Path) -> None:
    (tmp_path / "worker.db").mkdir()  # not a file: SQLite cannot open it (neither damage nor data)
    with pytest.raises(StorageError, match="cannot open .*worker.db") as info:
        WorkerCache.open(str(tmp_path))
    assert not isinstance(info.value, CorruptStateError)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["worker.db"]


def test_only_damage_counts_as_damage() -> None:
    def error(code: int, message: str) -> sqlite3.Error:
        exc = sqlite3.OperationalError(message)
        exc.sqlite_errorcode = code  # type: ignore[attr-defined]
        exc.sqlite_errorname = "X"  # type: ignore[attr-defined]
        return exc

    assert isinstance(sqlitefile.classify(error(26, "file is not a database"), "f"), CorruptStateError)
    assert isinstance(sqlitefile.classify(error(11, "malformed"), "f"), CorruptStateError)
    assert isinstance(sqlitefile.classify(error(11 | (1 << 8), "corrupt vtab"), "f"), CorruptStateError)
    for code, message in ((10, "disk I/O error"), (13, "database or disk is full"), (3, "access denied"),
                          (14, "unable to open database file"), (8, "attempt to write a readonly database")):
        classified = sqlitefile.classify(error(code, message), "f")
        assert type(classified) is StorageError, (code, message)


def filled_store(data_dir: Path) -> None:
    store = Store(str(data_dir))
    store.restore(None)
    founder = c.ManagerRecord("m1", 1, "127.0.0.1:1", "127.0.0.1:2")
    cmds: list[c.Command] = [c.InitCluster("cluster-1", T0, founder)]
    cmds += [c.CreateService(f"svc-{i}", f"web-{i}", ServiceSpec(image="x" * 200), T0) for i in range(100)]
    store.apply([(i + 1, 1, c.encode(cmd)) for i, cmd in enumerate(cmds)])
    store.close()
    assert os.path.getsize(data_dir / "warren.db") > 4 * PAGE


@pytest.mark.parametrize("where", DAMAGE)
def test_a_damaged_state_file_is_moved_aside_and_rebuilt(
    tmp_path: Path, where: str, caplog: pytest.LogCaptureFixture
) -> None:
    filled_store(tmp_path)
    overwrite(tmp_path / "warren.db", DAMAGE[where])
    damaged = (tmp_path / "warren.db").read_bytes()
    store = Store(str(tmp_path))  # the core then restores the latest snapshot and replays the log
    assert store.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert store.conn.execute("SELECT count(*) FROM services").fetchone()[0] == 0
    store.close()
    (aside,) = tmp_path.glob("warren.db.damaged-*[0-9TZ]")
    assert aside.read_bytes() == damaged
    (record,) = [r for r in caplog.records if "moved aside" in r.getMessage()]
    assert record.levelno == logging.WARNING
    assert "rebuilt from snapshot and log" in record.getMessage()


def test_an_intact_state_file_is_just_replaced(tmp_path: Path) -> None:
    filled_store(tmp_path)
    Store(str(tmp_path)).close()
    assert sorted(p.name for p in tmp_path.iterdir() if "damaged" in p.name) == []


def test_a_state_file_that_cannot_be_read_stops_the_manager_and_is_kept(tmp_path: Path) -> None:
    (tmp_path / "warren.db").mkdir()
    (tmp_path / "warren.db" / "precious").write_text("x")
    with pytest.raises(StorageError) as info:
        Store(str(tmp_path))
    assert not isinstance(info.value, CorruptStateError)
    assert (tmp_path / "warren.db" / "precious").exists()
    assert not list(tmp_path.glob("*damaged*"))
