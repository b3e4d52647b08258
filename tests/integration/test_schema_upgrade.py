"""A manager restarted on a snapshot of an older state schema (3) upgrades it at start, through the
real start path (the Raft core hands the snapshot file to Store.restore), and serves the full state."""

from __future__ import annotations

import base64
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.integration.managers import TIMER_FLAGS, ManagerCluster, api
from warren.store import schema
from warren.testing.wait import eventually

pytestmark = pytest.mark.integration

V3_SNAPSHOT = Path(__file__).parent.parent / "fixtures" / "schema-v3" / "manager" / "snapshot.db"


def tables(path: Path) -> list[tuple[str, str]]:
    conn = sqlite3.connect(path)
    try:
        return sorted(conn.execute("SELECT name, sql FROM sqlite_master WHERE sql IS NOT NULL"))
    finally:
        conn.close()


def test_a_manager_restarted_on_a_previous_schema_snapshot_upgrades_it(
    make_managers: Callable[..., ManagerCluster],
) -> None:
    snapshots = ["--raft-snapshot-threshold", "30", "--raft-log-keep", "0"]
    manager = make_managers(extra_flags=[*TIMER_FLAGS, *snapshots]).init()
    with api(manager.api_addr, 10.0) as client:
        value = base64.b64encode(b"s3cret").decode()
        assert client.post("/v1/secrets", json={"name": "db-password", "data": value}).status_code == 201
        for i in range(40):
            spec = {"name": f"s{i}", "image": "busybox", "replicas": i % 3, "secrets": ["db-password"]}
            assert client.post("/v1/services", json=spec).status_code == 201
        eventually(lambda: manager.metrics()["warren_raft_snapshot_index"] >= 30, 20, "a snapshot")
        before = {path: client.get(path).json() for path in ("/v1/services", "/v1/secrets")}
    assert manager.stop() == 0

    # Turn the manager's own snapshot into what an older Warren wrote: schema 3 had no
    # schema_migrations table, nor configs (schema 5) nor volumes (6), nor tasks.ports (7), nor
    # nodes.operator_labels (8), and its
    # content digest covered the tables it had. The result has exactly the tables of a snapshot the code
    # at 2ac1aef made (DROP COLUMN leaves the statement's last line break out: the old text is put back).
    (snapshot,) = (manager.data_dir / "raft" / "snapshots").glob("snap-*.bin")
    conn = sqlite3.connect(snapshot)
    conn.execute("DROP TABLE schema_migrations")
    conn.execute("DROP TABLE configs")
    conn.execute("DROP TABLE volumes")
    conn.execute("ALTER TABLE tasks DROP COLUMN ports")
    conn.execute("ALTER TABLE nodes DROP COLUMN operator_labels")
    old = dict(tables(V3_SNAPSHOT))
    conn.execute("PRAGMA writable_schema = ON")
    for table in ("tasks", "nodes"):
        sql = "UPDATE sqlite_master SET sql = ? WHERE type = 'table' AND name = ?"
        conn.execute(sql, (old[table], table))
    conn.execute("PRAGMA writable_schema = OFF")
    conn.execute("UPDATE meta SET value = ? WHERE key = 'content_digest'", (schema.content_digest(conn),))
    conn.execute("UPDATE meta SET value = '3' WHERE key = 'schema_version'")
    conn.commit()
    conn.close()
    assert tables(snapshot) == tables(V3_SNAPSHOT)

    manager.restart()
    with api(manager.api_addr, 10.0) as client:
        after = {path: client.get(path).json() for path in before}
    assert after == before
    log = manager.errors()
    assert "state schema upgraded from version 3 to 8" in log, manager.log_tail()
    assert "state restored from" in log and "/snapshots/" in log, manager.log_tail()
