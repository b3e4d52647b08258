"""Reads of the replicated state, as plain JSON-able dicts (what the API returns)."""

from __future__ import annotations

import sqlite3
from typing import Any

import orjson

NODE_COLUMNS = (
    "name, role, state, availability, raft_id, api_addr, raft_addr, labels, created_at, updated_at, version"
)


def cluster(conn: sqlite3.Connection) -> dict[str, Any] | None:
    row = conn.execute("SELECT id, created_at, version FROM cluster").fetchone()
    return (
        None
        if row is None
        else {"cluster_id": row["id"], "created_at": row["created_at"], "version": row["version"]}
    )


def _node(row: sqlite3.Row) -> dict[str, Any]:
    doc = dict(row)
    doc["labels"] = orjson.loads(doc["labels"])
    return doc


def nodes(conn: sqlite3.Connection, role: str | None = None) -> list[dict[str, Any]]:
    if role is None:
        rows = conn.execute(f"SELECT {NODE_COLUMNS} FROM nodes ORDER BY role, raft_id, name")
    else:
        rows = conn.execute(
            f"SELECT {NODE_COLUMNS} FROM nodes WHERE role = ? ORDER BY raft_id, name", (role,)
        )
    return [_node(r) for r in rows]


def node(conn: sqlite3.Connection, name: str) -> dict[str, Any] | None:
    row = conn.execute(f"SELECT {NODE_COLUMNS} FROM nodes WHERE name = ?", (name,)).fetchone()
    return None if row is None else _node(row)


def count_nodes(conn: sqlite3.Connection, role: str) -> int:
    return int(conn.execute("SELECT count(*) FROM nodes WHERE role = ?", (role,)).fetchone()[0])


def _service(row: sqlite3.Row) -> dict[str, Any]:
    return {
        "id": row["id"],
        "name": row["name"],
        "spec": orjson.loads(row["spec"]),
        "version": row["version"],
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
    }


def services(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    return [_service(r) for r in conn.execute("SELECT * FROM services ORDER BY name")]


def service(conn: sqlite3.Connection, name: str) -> dict[str, Any] | None:
    row = conn.execute("SELECT * FROM services WHERE name = ?", (name,)).fetchone()
    return None if row is None else _service(row)


def count_rows(conn: sqlite3.Connection, table: str) -> int:
    return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])  # table names are ours


def table_rows(conn: sqlite3.Connection, table: str) -> list[dict[str, Any]]:
    return [dict(r) for r in conn.execute(f"SELECT * FROM {table}")]  # table names are ours
