"""Reads of the volumes table: each node's named volumes as its worker reported them, the services whose
specs mount each name, and the removals asked for (docs/volumes.md)."""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from typing import Any

# Every (volume name, service name) where the service's spec mounts a volume of that name.
_USES = (
    "SELECT json_extract(m.value, '$.source'), s.name FROM services s, json_each(s.spec, '$.mounts') m"
    " WHERE json_extract(m.value, '$.type') = 'volume'"
)
_COLUMNS = (
    "v.name, v.node, v.driver, v.remove_at, v.created_at, v.version, n.state AS node_state,"
    " n.availability AS node_availability"
)


def users(conn: sqlite3.Connection, name: str | None = None) -> dict[str, list[str]]:
    """Volume name -> the names of the services whose spec mounts it (sorted, each once); only `name`'s
    if given."""
    sql = _USES
    args: tuple[str, ...] = ()
    if name is not None:
        sql, args = f"{_USES} AND json_extract(m.value, '$.source') = ?", (name,)
    found: dict[str, list[str]] = {}
    for volume, service in conn.execute(sql + " ORDER BY s.name", args):
        names = found.setdefault(str(volume), [])
        if not names or names[-1] != service:
            names.append(str(service))
    return found


def _doc(row: sqlite3.Row, services: Mapping[str, list[str]]) -> dict[str, Any]:
    doc = dict(row)
    doc["services"] = services.get(doc["name"], [])
    doc["removal_pending"] = doc["remove_at"] is not None
    return doc


def listing(conn: sqlite3.Connection, name: str | None = None) -> list[dict[str, Any]]:
    """Every node's volumes (only those named `name`, if given), by name, node and driver, each with
    its node's state, the services whose spec mounts its name and whether its removal is pending."""
    where, args = ("", ()) if name is None else (" WHERE v.name = ?", (name,))
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM volumes v LEFT JOIN nodes n ON n.name = v.node{where}"
        " ORDER BY v.name, v.node, v.driver",
        args,
    ).fetchall()
    services = users(conn, name)
    return [_doc(r, services) for r in rows]


def of_node(conn: sqlite3.Connection, node: str) -> list[tuple[str, str]]:
    """Node `node`'s volumes as (name, driver), sorted: what its worker last reported."""
    rows = conn.execute("SELECT name, driver FROM volumes WHERE node = ? ORDER BY name, driver", (node,))
    return [(str(r[0]), str(r[1])) for r in rows]


def held(conn: sqlite3.Connection) -> dict[str, frozenset[tuple[str, str]]]:
    """Node -> the (name, driver) of every volume it holds."""
    found: dict[str, set[tuple[str, str]]] = {}
    cur = conn.cursor()
    cur.row_factory = None
    for node, name, driver in cur.execute("SELECT node, name, driver FROM volumes"):
        found.setdefault(str(node), set()).add((str(name), str(driver)))
    return {node: frozenset(names) for node, names in found.items()}


def removals(conn: sqlite3.Connection) -> dict[str, list[str]]:
    """Node -> the names of its volumes whose removal was asked for (sorted, each once), leaving out a
    name a service's spec mounts now (one created after the request: its volume stays)."""
    cur = conn.cursor()
    cur.row_factory = None
    pending = cur.execute(
        "SELECT DISTINCT node, name FROM volumes WHERE remove_at IS NOT NULL ORDER BY node, name"
    ).fetchall()
    if not pending:  # the common case, read after every commit: no look at the specs
        return {}
    mounted = set(users(conn))
    found: dict[str, list[str]] = {}
    for node, name in pending:
        if name not in mounted:
            found.setdefault(str(node), []).append(str(name))
    return found
