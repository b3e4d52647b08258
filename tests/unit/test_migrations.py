"""Upgrades keep the data: files written by the previous schemas (tests/fixtures/schema-v6, made by the
code at commit 2548888, schema-v4, by the code at e972c44, and schema-v3, by the code at 2ac1aef; see
tests/fixtures/make_schema_fixtures.py)
open with this code, are upgraded in one transaction and keep every record; a file of a version with no
way up is refused untouched."""

from __future__ import annotations

import json
import logging
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import orjson
import pytest

from warren import sqlitefile
from warren.errors import CorruptStateError
from warren.spec.mounts import ConfigRef
from warren.spec.service import ServiceSpec
from warren.sqlitefile import Migration
from warren.store import commands as c
from warren.store import schema
from warren.store.machine import Store, check_state_file, upgrade_file
from warren.worker import cache as worker_cache
from warren.worker.cache import WorkerCache

FIXTURES = Path(__file__).parent.parent / "fixtures" / "schema-v3"
EXPECTED: dict[str, Any] = json.loads((FIXTURES / "expected.json").read_text())
V4 = Path(__file__).parent.parent / "fixtures" / "schema-v4"
EXPECTED_V4: dict[str, Any] = json.loads((V4 / "expected.json").read_text())
V6 = Path(__file__).parent.parent / "fixtures" / "schema-v6"
EXPECTED_V6: dict[str, Any] = json.loads((V6 / "expected.json").read_text())
# Tables a file of each fixture's version did not have yet: empty once it is upgraded.
NEWER_TABLES: dict[str, list[dict[str, Any]]] = {"configs": [], "volumes": []}
# Columns added since every fixture's version, with the value an upgraded row gets.
NEWER_COLUMNS: dict[str, dict[str, Any]] = {"tasks": {"ports": None}, "nodes": {"operator_labels": "{}"}}
# The upgrade steps a file of each fixture's version goes through (the schema_migrations history).
HISTORY = {
    "v3": [(4, "migrated"), (5, "migrated"), (6, "migrated"), (7, "migrated"), (8, "migrated")],
    "v4": [(4, "created"), (5, "migrated"), (6, "migrated"), (7, "migrated"), (8, "migrated")],
    "v6": [(6, "created"), (7, "migrated"), (8, "migrated")],
}
VERSIONS = ["v3", "v4", "v6"]


def fixture(version: str) -> tuple[Path, dict[str, Any]]:
    return {"v3": (FIXTURES, EXPECTED), "v4": (V4, EXPECTED_V4), "v6": (V6, EXPECTED_V6)}[version]


def upgraded(tables: dict[str, list[dict[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
    """A fixture's rows as they read once upgraded: the newer tables empty, the newer columns added."""
    rows = {**tables, **{t: v for t, v in NEWER_TABLES.items() if t not in tables}}
    return {t: [{**r, **NEWER_COLUMNS.get(t, {})} for r in v] for t, v in rows.items()}


T0 = 1_800_000_000.0  # the fixture's clock
T1 = 1_800_100_000.0


def rows(conn: sqlite3.Connection) -> dict[str, list[dict[str, Any]]]:
    """Every row of every replicated table, as JSON would carry it (the fixture's expected.json)."""
    conn.row_factory = sqlite3.Row
    return {
        t: [json.loads(orjson.dumps(dict(r))) for r in conn.execute(f"SELECT * FROM {t} ORDER BY rowid")]
        for t in schema.TABLES
    }


def history(conn: sqlite3.Connection) -> list[tuple[int, str]]:
    return [(r[0], r[1]) for r in conn.execute("SELECT version, how FROM schema_migrations ORDER BY version")]


def test_the_fixtures_are_of_the_previous_schemas() -> None:
    assert EXPECTED["state"]["schema_version"] == 3 and EXPECTED["worker"]["schema_version"] == 1
    assert EXPECTED_V4["state"]["schema_version"] == 4 and EXPECTED_V4["worker"]["schema_version"] == 2
    assert EXPECTED_V6["state"]["schema_version"] == 6 and EXPECTED_V6["worker"]["schema_version"] == 2
    assert schema.SCHEMA_VERSION == 8 and worker_cache.SCHEMA_VERSION == 2
    for version, found in (("v3", 3), ("v4", 4), ("v6", 6)):
        snapshot = str(fixture(version)[0] / "manager" / "snapshot.db")
        with pytest.raises(CorruptStateError, match=f"schema version {found}, this Warren reads version 8"):
            check_state_file(snapshot)  # as it is, not a current state file: it needs the upgrade
        old_tables = [t for t in schema.TABLES if t not in NEWER_TABLES]
        assert all("ports" not in row for row in fixture(version)[1]["state"]["snapshot"]["tasks"])
        assert all(fixture(version)[1]["state"]["snapshot"][t] for t in old_tables), "every table has records"


@pytest.mark.parametrize("version", VERSIONS)
def test_a_previous_schema_snapshot_is_restored_upgraded_with_every_record(
    tmp_path: Path, version: str
) -> None:
    files, expected = fixture(version)
    snapshot = tmp_path / "snap-1-2-3.bin"  # what the core keeps and hands over: the same bytes
    shutil.copyfile(files / "manager" / "snapshot.db", snapshot)
    before = snapshot.read_bytes()
    (tmp_path / "data").mkdir()
    store = Store(str(tmp_path / "data"))
    store.restore(str(snapshot))
    assert snapshot.read_bytes() == before, "restore must not change the core's snapshot file"
    assert schema.schema_version(store.conn) == schema.SCHEMA_VERSION
    assert history(store.conn) == HISTORY[version]
    assert rows(store.conn) == upgraded(expected["state"]["snapshot"])
    assert store.applied_index == expected["state"]["snapshot_applied_index"]

    # The upgraded state is live: the rest of the log (the command the old manager applied after its
    # snapshot) applies on it and gives the state that manager had; new commands apply too.
    index = store.applied_index
    answers = store.apply([(index + 1, 1, c.encode(c.UpdateService("web", {"replicas": 3}, T0 + 6)))])
    assert b'"ok"' in answers[0], answers
    assert rows(store.conn) == upgraded(expected["state"]["state"])
    config = c.CreateConfig("config-1", "redis-conf", "aGk=", 2, "ab" * 32, T1)
    spec = ServiceSpec(image="redis:7", secrets=["api-key"], configs=[ConfigRef(name="redis-conf")])
    answers = store.apply([(index + 2, 1, c.encode(config)),
                           (index + 3, 1, c.encode(c.CreateService("service-3", "cache", spec, T1)))])
    assert all(b'"ok"' in answer for answer in answers), answers
    new_snapshot = str(tmp_path / "new.bin")
    store.snapshot(new_snapshot)
    check_state_file(new_snapshot)
    store.close()


@pytest.mark.parametrize("version", VERSIONS)
def test_a_previous_schema_data_dir_opens(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, version: str
) -> None:
    files, expected = fixture(version)
    caplog.set_level(logging.INFO)
    data_dir = tmp_path / "data"
    shutil.copytree(files / "manager", data_dir)
    store = Store(str(data_dir))  # as a manager starts: its old state file is intact, just derived
    assert not list(data_dir.glob("*.damaged-*")), "an intact older state file is no damage"
    store.restore(str(data_dir / "snapshot.db"))
    assert rows(store.conn) == upgraded(expected["state"]["snapshot"])
    store.close()
    # The state file itself, read as a file (a backup of it, say), upgrades the same way.
    copy = tmp_path / f"warren-{version}.db"
    shutil.copyfile(files / "manager" / "warren.db", copy)
    upgrade_file(str(copy))
    conn = sqlite3.connect(copy)
    assert schema.schema_version(conn) == schema.SCHEMA_VERSION
    assert rows(conn) == upgraded(expected["state"]["state"])
    conn.close()
    assert f"state schema upgraded from version {expected['state']['schema_version']} to 8" in caplog.text


def test_schema_6_gains_the_tasks_ports_column_last_and_stores_reported_ports(tmp_path: Path) -> None:
    snapshot = tmp_path / "snap.bin"
    shutil.copyfile(V6 / "manager" / "snapshot.db", snapshot)
    (tmp_path / "data").mkdir()
    store = Store(str(tmp_path / "data"))
    store.restore(str(snapshot))
    columns = [r[1] for r in store.conn.execute("PRAGMA table_info(tasks)")]
    (fresh_dir := tmp_path / "fresh").mkdir()
    fresh = Store(str(fresh_dir))
    # The same columns in the same order as a file created at 7: the content digest reads rows as they come.
    created = [r[1] for r in fresh.conn.execute("PRAGMA table_info(tasks)")]
    assert columns[-1] == "ports" and columns == created
    fresh.close()
    first = EXPECTED_V6["state"]["snapshot"]["tasks"][0]
    task_id, node = first["id"], first["node"]
    index = store.applied_index
    update = c.TaskStatus(task_id, "running", "running", T1, node=node, ports={"8080": 32768})
    answers = store.apply([(index + 1, 1, c.encode(c.SetTaskStatuses([update])))])
    assert orjson.loads(answers[0])["ok"] == {"applied": 1, "ignored": 0}, answers
    stored = store.conn.execute("SELECT ports FROM tasks WHERE id = ?", (task_id,)).fetchone()[0]
    assert orjson.loads(stored) == {"8080": 32768}
    new_snapshot = str(tmp_path / "new.bin")
    store.snapshot(new_snapshot)
    check_state_file(new_snapshot)  # the snapshot carries the column (and its digest covers it)
    conn = sqlite3.connect(new_snapshot)
    assert conn.execute("SELECT ports FROM tasks WHERE id = ?", (task_id,)).fetchone()[0] == stored
    conn.close()
    store.close()


def test_schema_7_gains_nodes_operator_labels_last_apart_from_reported_labels(tmp_path: Path) -> None:
    snapshot = tmp_path / "snap.bin"
    shutil.copyfile(V6 / "manager" / "snapshot.db", snapshot)
    (tmp_path / "data").mkdir()
    store = Store(str(tmp_path / "data"))
    store.restore(str(snapshot))
    columns = [r[1] for r in store.conn.execute("PRAGMA table_info(nodes)")]
    (fresh_dir := tmp_path / "fresh").mkdir()
    fresh = Store(str(fresh_dir))
    assert columns[-1] == "operator_labels" and columns == [
        r[1] for r in fresh.conn.execute("PRAGMA table_info(nodes)")
    ]
    fresh.close()
    (worker,) = [n for n in EXPECTED_V6["state"]["snapshot"]["nodes"] if n["role"] == "worker"][:1]
    index = store.applied_index
    answers = store.apply([(index + 1, 1, c.encode(c.SetNodeLabels(worker["name"], {"zone": "eu"}, [], T1)))])
    assert b'"ok"' in answers[0], answers
    row = store.conn.execute("SELECT labels, operator_labels FROM nodes WHERE name = ?", (worker["name"],))
    assert tuple(row.fetchone()) == (worker["labels"], '{"zone":"eu"}')
    store.close()


def test_a_previous_schema_worker_db_opens_upgraded_with_every_record(tmp_path: Path) -> None:
    shutil.copytree(FIXTURES / "worker", tmp_path / "worker")
    cache = WorkerCache.open(str(tmp_path / "worker"))
    expected = EXPECTED["worker"]
    digest, assignments = cache.assignments()
    assert (digest, assignments) == (expected["digest"], expected["assignments"])
    local = {k: [v.task_id, v.driver, v.container_id, v.state, v.restarts, v.message, v.exit_code,
                 v.restartable] for k, v in cache.local_tasks().items()}
    assert local == expected["local_tasks"]
    assert [[seq, u.to_doc()] for seq, u in cache.pending()] == expected["pending"]
    conn = cache._conn
    assert conn.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()[0] == "2"
    assert history(conn) == [(2, "migrated")]
    cache.close()
    again = WorkerCache.open(str(tmp_path / "worker"))  # upgraded once: a second open changes nothing
    assert history(again._conn) == [(2, "migrated")]
    again.close()


def test_a_new_file_records_its_creation(tmp_path: Path) -> None:
    (tmp_path / "m").mkdir()
    store = Store(str(tmp_path / "m"))
    assert history(store.conn) == [(schema.SCHEMA_VERSION, "created")]
    store.close()
    cache = WorkerCache.open(str(tmp_path))
    assert history(cache._conn) == [(worker_cache.SCHEMA_VERSION, "created")]
    cache.close()


def test_files_of_a_newer_schema_are_refused_untouched(tmp_path: Path) -> None:
    snapshot = tmp_path / "snap.bin"
    (tmp_path / "m").mkdir()
    store = Store(str(tmp_path / "m"))
    store.snapshot(str(snapshot))
    conn = sqlite3.connect(snapshot)
    conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    conn.commit()
    conn.close()
    readable = "3 or 4 or 5 or 6 or 7"
    with pytest.raises(CorruptStateError, match=f"schema version 99, this Warren reads version {readable}"):
        store.restore(str(snapshot))
    store.close()

    data_dir = tmp_path / "w"
    shutil.copytree(FIXTURES / "worker", data_dir)
    conn = sqlite3.connect(data_dir / "worker.db")
    conn.execute("UPDATE meta SET value = '3' WHERE key = 'schema'")
    conn.commit()
    conn.close()
    before = (data_dir / "worker.db").read_bytes()
    with pytest.raises(CorruptStateError, match="written by a newer Warren"):
        WorkerCache.open(str(data_dir))
    assert (data_dir / "worker.db").read_bytes() == before
    assert sorted(p.name for p in data_dir.iterdir()) == ["worker.db"], "nothing set aside or created"


def test_the_steps_run_in_one_transaction(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "f.db", isolation_level=None)
    conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    conn.execute("INSERT INTO meta VALUES ('v', '1')")
    steps = (
        Migration(1, "adds a", ("CREATE TABLE a (x)",)),
        Migration(2, "breaks", ("INSERT INTO no_such_table VALUES (1)",)),
    )

    def record(conn: sqlite3.Connection, step: Migration) -> None:
        conn.execute("UPDATE meta SET value = ? WHERE key = 'v'", (str(step.source + 1),))

    with pytest.raises(sqlite3.OperationalError):
        sqlitefile.upgrade(conn, 1, steps, 3, record)
    assert conn.execute("SELECT value FROM meta").fetchone()[0] == "1"
    assert conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'a'").fetchone() is None
    assert sqlitefile.upgrade(conn, 1, steps[:1], 2, record) == list(steps[:1])
    assert conn.execute("SELECT value FROM meta").fetchone()[0] == "2"


def test_a_gap_in_the_chain_is_caught_at_import() -> None:
    with pytest.raises(ValueError, match="follows"):
        sqlitefile.check_chain((Migration(1, "", ()), Migration(3, "", ())), 4)
    with pytest.raises(ValueError, match="ends at 2, not at 3"):
        sqlitefile.check_chain((Migration(1, "", ()),), 3)
