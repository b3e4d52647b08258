"""The replicated state in a canonical form, and a log replayed in a process of its own.

`python -m tests.unit.store.replay` reads logs (JSON: a list of logs, each a list of apply calls,
each a list of [index, term, payload as latin-1 text]) on stdin, applies each to a fresh store, and
writes every answer and the canonical state after each log on stdout. The stateful test runs it under
other hash seeds: a set's iteration order differs from one manager process to another, and must
reach neither an answer nor a row.
"""

from __future__ import annotations

import os
import sqlite3
import sys
import tempfile
from pathlib import Path
from typing import Any

import orjson

from warren.store import schema
from warren.store.machine import Store

Entries = list[tuple[int, int, bytes]]

# The stores' files: in memory where there is a tmpfs, so that the fsyncs of snapshots and restores
# (real, and the same code) cost nothing on a busy disk.
SCRATCH = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None


def canonical(store: Store) -> dict[str, Any]:
    """Everything replicated, in a fixed order: every table's rows with their rowids (a backup keeps
    them, and the content digest reads rows in rowid order: equal rows in another order would make
    equal states with unequal digests), the schema, and the applied index. Not the meta table's other
    rows: a restored file carries the content digest its snapshot was given."""
    conn = store.conn
    state: dict[str, Any] = {
        "schema": sorted(
            tuple(r) for r in conn.execute("SELECT type, name, tbl_name, sql FROM sqlite_master")
        ),
        "migrations": [tuple(r) for r in conn.execute("SELECT * FROM schema_migrations ORDER BY version")],
        "applied_index": store.applied_index,
        "meta_applied_index": _meta(conn, "applied_index"),
        "schema_version": _meta(conn, "schema_version"),
    }
    for table in schema.TABLES:
        state[table] = [tuple(r) for r in conn.execute(f"SELECT rowid, * FROM {table} ORDER BY rowid")]
    return state


def _meta(conn: sqlite3.Connection, key: str) -> str | None:
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return None if row is None else str(row[0])


def fresh(path: Path) -> Store:
    """A state machine as the core starts one: a new Store, then the first work item, a restore."""
    store = Store(str(path))
    store.restore(None)
    return store


def replay(calls: list[Entries]) -> tuple[list[bytes], dict[str, Any]]:
    """`calls` applied to a fresh store: every answer, and the state they leave."""
    with tempfile.TemporaryDirectory(prefix="warren-replay-", dir=SCRATCH) as tmp:
        store = fresh(Path(tmp))
        try:
            answers = [a for entries in calls for a in store.apply(entries)]
            return answers, canonical(store)
        finally:
            store.close()


def to_wire(logs: list[list[Entries]]) -> bytes:
    return orjson.dumps([[[[i, t, p.decode("latin-1")] for i, t, p in call] for call in log] for log in logs])


def main() -> None:
    logs = orjson.loads(sys.stdin.buffer.read())
    out = []
    for log in logs:
        answers, state = replay([[(i, t, p.encode("latin-1")) for i, t, p in call] for call in log])
        out.append({"answers": [a.decode() for a in answers], "state": state})
    sys.stdout.buffer.write(orjson.dumps(out))


if __name__ == "__main__":
    main()
