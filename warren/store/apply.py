"""What each command does to the state. Deterministic: the inputs are the command, its log index and
the current state; nothing reads a clock, a random source or the network.

A handler returns the command's result (JSON-able) or raises CommandError to refuse it. The cluster,
node, token, certificate and backup commands are here; services and secrets in apply_services.py,
configs in apply_configs.py, tasks in apply_tasks.py, volumes in apply_volumes.py.
"""

from __future__ import annotations

import hmac
import sqlite3
import typing
from collections.abc import Callable
from typing import Any

import orjson

from warren.config import MAX_NODE_LABELS
from warren.spec import taskstate
from warren.store import apply_configs, apply_services, apply_tasks, apply_volumes, queries
from warren.store import commands as c
from warren.store.commands import CommandError
from warren.store.schema import TABLES, json_text

Handler = Callable[[sqlite3.Connection, int, Any], Any]

NODE_STATES = frozenset(typing.get_args(c.NodeState))


def apply(conn: sqlite3.Connection, index: int, cmd: c.Command) -> Any:
    handler = _HANDLERS.get(type(cmd))
    if handler is None:  # a command class without a handler: refused like an unknown one, never a crash
        raise c.UnknownCommandError(f"this manager cannot apply {cmd.OP!r} commands")
    return handler(conn, index, cmd)


def _init_cluster(conn: sqlite3.Connection, index: int, cmd: c.InitCluster) -> Any:
    if conn.execute("SELECT 1 FROM cluster").fetchone() is not None:
        raise CommandError("conflict", "the cluster is already initialized")
    conn.execute(
        "INSERT INTO cluster (id, created_at, next_raft_id, version) VALUES (?, ?, ?, ?)",
        (cmd.cluster_id, cmd.at, cmd.manager.raft_id + 1, index),
    )
    _insert_manager(conn, index, cmd.manager, "ready", cmd.at)
    return {"cluster_id": cmd.cluster_id}


def _insert_manager(conn: sqlite3.Connection, index: int, m: c.ManagerRecord, state: str, at: float) -> None:
    conn.execute(
        "INSERT INTO nodes (name, role, state, raft_id, api_addr, raft_addr, created_at, updated_at, version)"
        " "
        "VALUES (?, 'manager', ?, ?, ?, ?, ?, ?, ?)",
        (m.name, state, m.raft_id, m.api_addr, m.raft_addr, at, at, index),
    )


def _create_token(conn: sqlite3.Connection, index: int, cmd: c.CreateToken) -> Any:
    if cmd.rotate:
        conn.execute(
            "UPDATE join_tokens SET revoked = 1, version = ? WHERE role = ? AND revoked = 0",
            (index, cmd.role),
        )
    # Expired tokens are useless: drop them so the table stays small.
    conn.execute("DELETE FROM join_tokens WHERE expires_at <= ?", (cmd.at,))
    conn.execute(
        "INSERT INTO join_tokens (id, role, hash, created_at, expires_at, version) VALUES (?, ?, ?, ?, ?, ?)",
        (cmd.token_id, cmd.role, cmd.hash, cmd.at, cmd.expires_at, index),
    )
    return {"token_id": cmd.token_id, "expires_at": cmd.expires_at}


def check_token(conn: sqlite3.Connection, role: str, token_hash: str, at: float) -> None:
    """Raise CommandError("unauthorized") unless a live token of `role` has this hash."""
    row = conn.execute(
        "SELECT role, hash, expires_at, revoked FROM join_tokens WHERE hash = ?", (token_hash,)
    ).fetchone()
    # The lookup is by hash (a digest of the secret, not the secret); the final comparison is constant time.
    if row is None or not hmac.compare_digest(row["hash"], token_hash):
        raise CommandError("unauthorized", "invalid join token")
    if row["role"] != role:
        raise CommandError("unauthorized", f"this is a {row['role']} join token; a {role} token is required")
    if row["revoked"]:
        raise CommandError(
            "unauthorized", "this join token was rotated; ask for a new one (warren cluster join-token)"
        )
    if row["expires_at"] <= at:
        raise CommandError(
            "unauthorized", "this join token has expired; ask for a new one (warren cluster join-token)"
        )


def _register_manager(conn: sqlite3.Connection, index: int, cmd: c.RegisterManager) -> Any:
    check_token(conn, "manager", cmd.token_hash, cmd.at)
    cluster = conn.execute("SELECT id, next_raft_id FROM cluster").fetchone()
    if cluster is None:
        raise CommandError("conflict", "the cluster is not initialized")
    for column in ("api_addr", "raft_addr"):
        clash = conn.execute(
            f"SELECT name FROM nodes WHERE role = 'manager' AND {column} = ? AND state != 'joining'",
            (getattr(cmd, column),),
        ).fetchone()
        if clash is not None:
            raise CommandError(
                "conflict", f"manager {clash['name']} already uses {column} {getattr(cmd, column)}"
            )
    # A join that crashed before promotion left a 'joining' record at the same address: replace it.
    conn.execute(
        "DELETE FROM nodes WHERE role = 'manager' AND state = 'joining' AND (api_addr = ? OR raft_addr = ?)",
        (cmd.api_addr, cmd.raft_addr),
    )
    raft_id = int(cluster["next_raft_id"])
    conn.execute("UPDATE cluster SET next_raft_id = ?, version = ?", (raft_id + 1, index))
    _insert_manager(
        conn, index, c.ManagerRecord(cmd.name, raft_id, cmd.api_addr, cmd.raft_addr), "joining", cmd.at
    )
    return {"name": cmd.name, "raft_id": raft_id, "cluster_id": cluster["id"]}


def _set_node_state(conn: sqlite3.Connection, index: int, cmd: c.SetNodeState) -> Any:
    if cmd.state not in NODE_STATES:
        raise CommandError("invalid", f"unknown node state {cmd.state!r}")
    before = _node_before(conn, cmd.name)
    cur = conn.execute(
        "UPDATE nodes SET state = ?, updated_at = ?, version = ? WHERE name = ?",
        (cmd.state, cmd.at, index, cmd.name),
    )
    if cur.rowcount == 0:
        raise CommandError("not_found", f"no node named {cmd.name!r}")
    return {"name": cmd.name, "state": cmd.state, "_before": before and before[:2]}


def _remove_node(conn: sqlite3.Connection, index: int, cmd: c.RemoveNode) -> Any:
    before = _node_before(conn, cmd.name)
    cur = conn.execute("DELETE FROM nodes WHERE name = ?", (cmd.name,))
    if cur.rowcount == 0:
        raise CommandError("not_found", f"no node named {cmd.name!r}")
    # Its volumes went with it (and their removal requests).
    conn.execute("DELETE FROM volumes WHERE node = ?", (cmd.name,))
    # Its tasks will never report again: they are failed here, so the reconciler replaces them.
    failed = conn.execute(
        f"UPDATE tasks SET state = 'failed', desired_state = 'shutdown', message = ?, updated_at = ?,"
        f" version = ? WHERE node = ? AND state NOT IN {taskstate.TERMINAL_SQL}",
        (f"node {cmd.name} was removed", cmd.at, index, cmd.name),
    ).rowcount
    return {"removed": cmd.name, "tasks_failed": failed, "_before": before and before[:2]}


def _register_worker(conn: sqlite3.Connection, index: int, cmd: c.RegisterWorker) -> Any:
    check_token(conn, "worker", cmd.token_hash, cmd.at)
    cluster = conn.execute("SELECT id FROM cluster").fetchone()
    if cluster is None:
        raise CommandError("conflict", "the cluster is not initialized")
    if conn.execute("SELECT 1 FROM nodes WHERE name = ?", (cmd.name,)).fetchone() is not None:
        raise CommandError("conflict", f"a node named {cmd.name!r} already exists")
    conn.execute(
        "INSERT INTO nodes (name, role, state, availability, api_addr, labels, resources, secret_hash,"
        " created_at, updated_at, version) VALUES (?, 'worker', 'ready', 'active', ?, ?, ?, ?, ?, ?, ?)",
        (
            cmd.name, cmd.addr, json_text(cmd.labels), json_text(cmd.resources), cmd.secret_hash,
            cmd.at, cmd.at, index,
        ),
    )
    return {"name": cmd.name, "cluster_id": cluster["id"]}


def _update_node(conn: sqlite3.Connection, index: int, cmd: c.UpdateNode) -> Any:
    cur = conn.execute(
        "UPDATE nodes SET api_addr = ?, labels = ?, resources = ?, updated_at = ?, version = ?"
        " WHERE name = ? AND role = 'worker'",
        (cmd.addr, json_text(cmd.labels), json_text(cmd.resources), cmd.at, index, cmd.name),
    )
    if cur.rowcount == 0:
        raise CommandError("not_found", f"no worker named {cmd.name!r}")
    return queries.node(conn, cmd.name)


def _set_node_availability(conn: sqlite3.Connection, index: int, cmd: c.SetNodeAvailability) -> Any:
    before = _node_before(conn, cmd.name)
    cur = conn.execute(
        "UPDATE nodes SET availability = ?, updated_at = ?, version = ? WHERE name = ?",
        (cmd.availability, cmd.at, index, cmd.name),
    )
    if cur.rowcount == 0:
        raise CommandError("not_found", f"no node named {cmd.name!r}")
    answer = queries.node(conn, cmd.name)
    if answer is not None and before is not None:
        answer["_before"] = (before[0], before[2])
    return answer


def _set_node_labels(conn: sqlite3.Connection, index: int, cmd: c.SetNodeLabels) -> Any:
    row = conn.execute("SELECT operator_labels FROM nodes WHERE name = ?", (cmd.name,)).fetchone()
    if row is None:
        raise CommandError("not_found", f"no node named {cmd.name!r}")
    labels = {**orjson.loads(row["operator_labels"]), **cmd.add}
    for key in cmd.remove:
        labels.pop(key, None)
    if len(labels) > MAX_NODE_LABELS:
        raise CommandError(
            "invalid", f"node {cmd.name} would have {len(labels)} operator labels; at most {MAX_NODE_LABELS}"
        )
    conn.execute(
        "UPDATE nodes SET operator_labels = ?, updated_at = ?, version = ? WHERE name = ?",
        (json_text(dict(sorted(labels.items()))), cmd.at, index, cmd.name),
    )
    return queries.node(conn, cmd.name)


# -- backups ----------------------------------------------------------------------------------------


def _import_rows(conn: sqlite3.Connection, index: int, cmd: c.ImportRows) -> Any:
    if cmd.table not in TABLES:
        raise CommandError("invalid", f"cannot import into table {cmd.table!r}")
    known = {r[1] for r in conn.execute(f"PRAGMA table_info({cmd.table})")}
    for row in cmd.rows:
        unknown = set(row) - known
        if unknown:
            raise CommandError("invalid", f"table {cmd.table} has no columns {sorted(unknown)}")
        _check_row(cmd.table, row)
        columns = sorted(row)
        placeholders = ", ".join("?" * len(columns))
        conn.execute(
            f"INSERT OR REPLACE INTO {cmd.table} ({', '.join(columns)}) VALUES ({placeholders})",
            [row[col] for col in columns],
        )
    return {"table": cmd.table, "rows": len(cmd.rows)}


def _check_row(table: str, row: dict[str, Any]) -> None:
    """Refuse a row SQLite cannot take as it is (a backup's rows never are so): without a column, or
    with a value that is not a scalar of SQLite's, which would raise a binding error and stop every
    manager at this entry instead of refusing it."""
    if not row:
        raise CommandError("invalid", f"a row for table {table} has no columns")
    for column in sorted(row):
        value = row[column]
        if isinstance(value, int) and not -(2**63) <= value < 2**63:
            raise CommandError("invalid", f"table {table}, column {column}: {value} does not fit 64 bits")
        if value is not None and not isinstance(value, (str, int, float)):
            raise CommandError(
                "invalid", f"table {table}, column {column}: a {type(value).__name__} is no SQLite value"
            )


def _reset_managers(conn: sqlite3.Connection, index: int, cmd: c.ResetManagers) -> Any:
    conn.execute("DELETE FROM nodes WHERE role = 'manager'")
    _insert_manager(conn, index, cmd.manager, "ready", cmd.at)
    # The old managers' local workers' volumes (imported with the others) went with them.
    conn.execute("DELETE FROM volumes WHERE node NOT IN (SELECT name FROM nodes)")
    conn.execute("UPDATE cluster SET next_raft_id = ?, version = ?", (cmd.manager.raft_id + 1, index))
    return {"name": cmd.manager.name}


def _set_cluster_ca(conn: sqlite3.Connection, index: int, cmd: c.SetClusterCA) -> Any:
    row = conn.execute("SELECT ca_cert FROM pki").fetchone()
    if row is not None:
        if row["ca_cert"] == cmd.ca_cert:
            return {"ca": "unchanged"}  # a founder that crashed after proposing it proposes it again
        raise CommandError("conflict", "the cluster already has a CA")
    conn.execute(
        "INSERT INTO pki (id, ca_cert, ca_key_sealed, created_at, version) VALUES (1, ?, ?, ?, ?)",
        (cmd.ca_cert, cmd.ca_key_sealed, cmd.at, index),
    )
    return {"ca": "set"}


def _record_cert(conn: sqlite3.Connection, index: int, cmd: c.RecordCert) -> Any:
    # Expired certificates need no revoking: drop them so the table stays small.
    conn.execute("DELETE FROM certs WHERE expires_at <= ?", (cmd.at,))
    conn.execute(
        "INSERT OR REPLACE INTO certs (fingerprint, node, role, expires_at, created_at, version) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        (cmd.fingerprint, cmd.node, cmd.role, cmd.expires_at, cmd.at, index),
    )
    return {"fingerprint": cmd.fingerprint}


def _note(conn: sqlite3.Connection, index: int, cmd: c.ClusterNote) -> Any:
    return {}  # changes no state: its event is all it is for (warren.store.events)


def _node_before(conn: sqlite3.Connection, name: str) -> tuple[str, str, str] | None:
    """(role, state, availability) of node `name` before a command changes it, for its event."""
    row = conn.execute("SELECT role, state, availability FROM nodes WHERE name = ?", (name,)).fetchone()
    return None if row is None else (row[0], row[1], row[2])


_HANDLERS: dict[type[Any], Handler] = {
    c.ClusterNote: _note,
    c.InitCluster: _init_cluster,
    c.CreateToken: _create_token,
    c.RegisterManager: _register_manager,
    c.SetNodeState: _set_node_state,
    c.RemoveNode: _remove_node,
    c.ImportRows: _import_rows,
    c.ResetManagers: _reset_managers,
    c.RegisterWorker: _register_worker,
    c.UpdateNode: _update_node,
    c.SetNodeAvailability: _set_node_availability,
    c.SetNodeLabels: _set_node_labels,
    c.SetClusterCA: _set_cluster_ca,
    c.RecordCert: _record_cert,
    **apply_services.HANDLERS,
    **apply_configs.HANDLERS,
    **apply_tasks.HANDLERS,
    **apply_volumes.HANDLERS,
}
