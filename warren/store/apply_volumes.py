"""What the volume commands do to the state (see apply.py: deterministic, a handler returns the result
or raises CommandError): a node's reported inventory, and removals asked for."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any

from warren.store import commands as c
from warren.store import volumes
from warren.store.commands import CommandError


def _node_volumes(conn: sqlite3.Connection, index: int, cmd: c.NodeVolumes) -> Any:
    if conn.execute("SELECT 1 FROM nodes WHERE name = ?", (cmd.node,)).fetchone() is None:
        raise CommandError("not_found", f"no node named {cmd.node!r}")
    reported = {(v.name, v.driver) for v in cmd.volumes}
    stored = set(volumes.of_node(conn, cmd.node))
    gone = sorted(stored - reported)
    new = sorted(reported - stored)
    # A volume the worker no longer has takes its removal request with it.
    conn.executemany(
        "DELETE FROM volumes WHERE node = ? AND name = ? AND driver = ?", [(cmd.node, *v) for v in gone]
    )
    conn.executemany(
        "INSERT INTO volumes (node, name, driver, remove_at, created_at, version)"
        " VALUES (?, ?, ?, NULL, ?, ?)",
        [(cmd.node, name, driver, cmd.at, index) for name, driver in new],
    )
    return {
        "node": cmd.node,
        "added": [{"name": n, "driver": d} for n, d in new],
        "removed": [{"name": n, "driver": d} for n, d in gone],
    }


def _remove_volume(conn: sqlite3.Connection, index: int, cmd: c.RemoveVolume) -> Any:
    found = conn.execute("SELECT 1 FROM volumes WHERE node = ? AND name = ?", (cmd.node, cmd.name)).fetchone()
    if found is None:
        raise CommandError("not_found", f"node {cmd.node} has no volume named {cmd.name!r}")
    services = volumes.users(conn, cmd.name).get(cmd.name, [])
    if services:
        raise c.in_use(f"volume {cmd.name!r}", services, "take it out of their specs or remove them first")
    # Asked again: the first request's time stays.
    conn.execute(
        "UPDATE volumes SET remove_at = COALESCE(remove_at, ?), version = ? WHERE node = ? AND name = ?",
        (cmd.at, index, cmd.node, cmd.name),
    )
    return {"node": cmd.node, "name": cmd.name, "status": "removal requested"}


HANDLERS: dict[type[Any], Callable[[sqlite3.Connection, int, Any], Any]] = {
    c.NodeVolumes: _node_volumes,
    c.RemoveVolume: _remove_volume,
}
