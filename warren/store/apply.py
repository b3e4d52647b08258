"""What each command does to the state. Deterministic: the inputs are the command, its log index and
the current state; nothing reads a clock, a random source or the network.

A handler returns the command's result (JSON-able) or raises CommandError to refuse it.
"""

from __future__ import annotations

import hmac
import sqlite3
import typing
from collections.abc import Callable
from typing import Any

import orjson

from warren.errors import InvalidError
from warren.spec import taskstate
from warren.spec.service import TASK_FIELDS, ServiceSpec, decode, spec_digest, to_doc
from warren.store import commands as c
from warren.store import queries
from warren.store.commands import CommandError
from warren.store.schema import TABLES

Handler = Callable[[sqlite3.Connection, int, Any], Any]

NODE_STATES = frozenset(typing.get_args(c.NodeState))
HEALTH_STATES = frozenset(typing.get_args(taskstate.Health))


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
    cur = conn.execute(
        "UPDATE nodes SET state = ?, updated_at = ?, version = ? WHERE name = ?",
        (cmd.state, cmd.at, index, cmd.name),
    )
    if cur.rowcount == 0:
        raise CommandError("not_found", f"no node named {cmd.name!r}")
    return {"name": cmd.name, "state": cmd.state}


def _remove_node(conn: sqlite3.Connection, index: int, cmd: c.RemoveNode) -> Any:
    cur = conn.execute("DELETE FROM nodes WHERE name = ?", (cmd.name,))
    if cur.rowcount == 0:
        raise CommandError("not_found", f"no node named {cmd.name!r}")
    # Its tasks will never report again: they are failed here, so the reconciler replaces them.
    failed = conn.execute(
        f"UPDATE tasks SET state = 'failed', desired_state = 'shutdown', message = ?, updated_at = ?,"
        f" version = ? WHERE node = ? AND state NOT IN {taskstate.TERMINAL_SQL}",
        (f"node {cmd.name} was removed", cmd.at, index, cmd.name),
    ).rowcount
    return {"removed": cmd.name, "tasks_failed": failed}


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
        (cmd.name, cmd.addr, _json(cmd.labels), _json(cmd.resources), cmd.secret_hash, cmd.at, cmd.at, index),
    )
    return {"name": cmd.name, "cluster_id": cluster["id"]}


def _update_node(conn: sqlite3.Connection, index: int, cmd: c.UpdateNode) -> Any:
    cur = conn.execute(
        "UPDATE nodes SET api_addr = ?, labels = ?, resources = ?, updated_at = ?, version = ?"
        " WHERE name = ? AND role = 'worker'",
        (cmd.addr, _json(cmd.labels), _json(cmd.resources), cmd.at, index, cmd.name),
    )
    if cur.rowcount == 0:
        raise CommandError("not_found", f"no worker named {cmd.name!r}")
    return queries.node(conn, cmd.name)


def _set_node_availability(conn: sqlite3.Connection, index: int, cmd: c.SetNodeAvailability) -> Any:
    cur = conn.execute(
        "UPDATE nodes SET availability = ?, updated_at = ?, version = ? WHERE name = ?",
        (cmd.availability, cmd.at, index, cmd.name),
    )
    if cur.rowcount == 0:
        raise CommandError("not_found", f"no node named {cmd.name!r}")
    return queries.node(conn, cmd.name)


def _placement(conn: sqlite3.Connection, node: str | None, message: str) -> tuple[str | None, str]:
    """Where a task proposed for `node` (None: unplaced) goes, and its message: the node only if it
    is still ready and active, else unplaced with the reason. Checked at apply time, since the node
    may have gone down or been drained between the proposer's decision and this command's commit."""
    if node is None:
        return None, message
    row = conn.execute("SELECT state, availability FROM nodes WHERE name = ?", (node,)).fetchone()
    if row is None or row["state"] != "ready" or row["availability"] != "active":
        return None, f"node {node} is no longer available"
    return node, message


def _create_service(conn: sqlite3.Connection, index: int, cmd: c.CreateService) -> Any:
    if conn.execute("SELECT 1 FROM services WHERE name = ?", (cmd.name,)).fetchone() is not None:
        raise CommandError("conflict", f"a service named {cmd.name!r} already exists")
    _check_secrets(conn, cmd.name, cmd.spec.secrets, "not_found", "names")
    conn.execute(
        "INSERT INTO services (id, name, spec, created_at, updated_at, version) VALUES (?, ?, ?, ?, ?, ?)",
        (cmd.service_id, cmd.name, _json(to_doc(cmd.spec)), cmd.at, cmd.at, index),
    )
    return queries.service(conn, cmd.name)


def _service_version(conn: sqlite3.Connection, name: str, if_version: int | None) -> sqlite3.Row:
    row = conn.execute("SELECT * FROM services WHERE name = ?", (name,)).fetchone()
    if row is None:
        raise CommandError("not_found", f"no service named {name!r}")
    if if_version is not None and row["version"] != if_version:
        raise CommandError("conflict", f"service {name!r} is at version {row['version']}, not {if_version}")
    return row  # type: ignore[no-any-return]


def _spec(doc: dict[str, Any], what: str) -> ServiceSpec:
    """The spec a merged document makes; CommandError if it would not be a valid one."""
    try:
        return decode(ServiceSpec, doc)
    except InvalidError as exc:
        raise CommandError("invalid", f"{what}: {exc}") from None


def _update_service(conn: sqlite3.Connection, index: int, cmd: c.UpdateService) -> Any:
    row = _service_version(conn, cmd.name, cmd.if_version)
    # Merged and stored as documents, as every Warren has (so managers of two versions write the same
    # text), and so that an update can mend a stored spec that is no longer a valid one.
    doc = {**orjson.loads(row["spec"]), **cmd.changes}
    spec = _spec(doc, "the updated spec would be invalid")
    if "secrets" in cmd.changes:
        _check_secrets(conn, cmd.name, spec.secrets, "not_found", "names")
    # Only a change of what tasks are made of is an update worth rolling back to before; a scale (or a
    # label) keeps the previous spec, so `rollback` after a scale undoes the last real update.
    old = queries.stored_spec(row["spec"])
    real = old is None or old.task_spec() != spec.task_spec()
    previous = row["spec"] if real else row["previous_spec"]
    conn.execute(
        "UPDATE services SET spec = ?, previous_spec = ?, updated_at = ?, version = ? WHERE name = ?",
        (_json(doc), previous, cmd.at, index, cmd.name),
    )
    return queries.service(conn, cmd.name)


# What a rollback brings back: how tasks are made and how they are rolled out; the rest is kept.
ROLLBACK_FIELDS = (*TASK_FIELDS, "update")


def _rollback_service(conn: sqlite3.Connection, index: int, cmd: c.RollbackService) -> Any:
    row = _service_version(conn, cmd.name, cmd.if_version)
    if row["previous_spec"] is None:
        raise CommandError("conflict", f"service {cmd.name!r} has no previous spec to roll back to")
    current, previous = orjson.loads(row["spec"]), orjson.loads(row["previous_spec"])
    doc = dict(current)
    for key in ROLLBACK_FIELDS:
        if key in previous:
            doc[key] = previous[key]
        else:
            doc.pop(key, None)
    spec = _spec(doc, "cannot roll back: the spec would be invalid")
    # A secret the previous spec used may have been removed since (only current specs hold one).
    what = "cannot roll back: its previous spec names"
    _check_secrets(conn, cmd.name, spec.secrets, "conflict", what)
    conn.execute(
        "UPDATE services SET spec = ?, previous_spec = ?, updated_at = ?, version = ? WHERE name = ?",
        (_json(doc), row["spec"], cmd.at, index, cmd.name),
    )
    if cmd.requested:
        status = {
            "state": "rollback_started",
            "message": "rollback requested",
            "started_at": cmd.at,
            "spec_digest": spec_digest(spec),
        }
        conn.execute("UPDATE services SET update_status = ? WHERE name = ?", (_json(status), cmd.name))
    return queries.service(conn, cmd.name)


def _set_update_status(conn: sqlite3.Connection, index: int, cmd: c.SetUpdateStatus) -> Any:
    # Not a change of the service the user made: `version` stays, so a user's If-Match does not fail
    # because the reconciler reported progress meanwhile.
    status = None if cmd.status is None else _json(cmd.status)
    cur = conn.execute("UPDATE services SET update_status = ? WHERE name = ?", (status, cmd.name))
    if cur.rowcount == 0:
        raise CommandError("not_found", f"no service named {cmd.name!r}")
    return {"name": cmd.name, "update_status": cmd.status}


def _remove_service(conn: sqlite3.Connection, index: int, cmd: c.RemoveService) -> Any:
    row = _service_version(conn, cmd.name, cmd.if_version)
    conn.execute("DELETE FROM tasks WHERE service_id = ?", (row["id"],))
    conn.execute("DELETE FROM services WHERE id = ?", (row["id"],))
    return {"removed": cmd.name}


# -- secrets ----------------------------------------------------------------------------------------


def _check_secrets(conn: sqlite3.Connection, service: str, names: Any, code: str, what: str) -> None:
    """Refuse a service spec whose `secrets` is not a list of names of existing secrets. The API
    checks the same first; here it holds against a secret removed meanwhile."""
    if names is None:
        return
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise CommandError("invalid", f"service {service!r}: secrets must be a list of secret names")
    known = queries.existing_secrets(conn, names)
    missing = [n for n in dict.fromkeys(names) if n not in known]
    if missing:
        listed = ", ".join(missing)
        raise CommandError(
            code,
            f"service {service!r}: {what} secrets that do not exist: {listed} "
            "(create them first: warren secret create NAME FILE)",
        )


def _create_secret(conn: sqlite3.Connection, index: int, cmd: c.CreateSecret) -> Any:
    if queries.existing_secrets(conn, [cmd.name]):
        raise CommandError(
            "conflict",
            f"a secret named {cmd.name!r} already exists (a secret cannot be changed: create one under "
            "a new name and switch the services to it, or remove this one first)",
        )
    conn.execute(
        "INSERT INTO secrets (id, name, data_sealed, created_at, updated_at, version)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (cmd.secret_id, cmd.name, cmd.data_sealed, cmd.at, cmd.at, index),
    )
    return queries.secret(conn, cmd.name)


def _remove_secret(conn: sqlite3.Connection, index: int, cmd: c.RemoveSecret) -> Any:
    if not queries.existing_secrets(conn, [cmd.name]):
        raise CommandError("not_found", f"no secret named {cmd.name!r}")
    users = queries.secret_users(conn, cmd.name)
    if users:
        noun = "service" if len(users) == 1 else "services"
        raise CommandError(
            "conflict",
            f"secret {cmd.name!r} is in use by {noun} {', '.join(users)}: take it out of their specs first "
            f"(warren service update SERVICE --secret-rm {cmd.name})",
        )
    conn.execute("DELETE FROM secrets WHERE name = ?", (cmd.name,))
    return {"removed": cmd.name}


# -- tasks ------------------------------------------------------------------------------------------
# Task commands carry many items, proposed by the leader from what it saw a moment ago: an item that no
# longer fits the state (unknown task, wrong node, a move backwards) is skipped and counted, never
# refused, so one stale item does not fail the rest.


def _create_tasks(conn: sqlite3.Connection, index: int, cmd: c.CreateTasks) -> Any:
    created = skipped = 0
    for t in cmd.tasks:
        service = conn.execute("SELECT 1 FROM services WHERE id = ?", (t.service_id,)).fetchone()
        exists = conn.execute("SELECT 1 FROM tasks WHERE id = ?", (t.task_id,)).fetchone()
        if service is None or exists is not None:
            skipped += 1
            continue
        node, message = _placement(conn, t.node, t.message)
        state = taskstate.PENDING if node is None else taskstate.ASSIGNED
        conn.execute(
            "INSERT INTO tasks (id, service_id, slot, node, desired_state, state, message, spec, spec_digest,"
            " created_at, updated_at, version) VALUES (?, ?, ?, ?, 'running', ?, ?, ?, ?, ?, ?, ?)",
            (
                t.task_id,
                t.service_id,
                t.slot,
                node,
                state,
                message,
                _json(to_doc(t.spec)),
                t.spec_digest,
                cmd.at,
                cmd.at,
                index,
            ),
        )
        created += 1
    return {"created": created, "skipped": skipped}


def _assign_tasks(conn: sqlite3.Connection, index: int, cmd: c.AssignTasks) -> Any:
    assigned = pending = ignored = 0
    for a in cmd.assignments:
        row = conn.execute("SELECT state FROM tasks WHERE id = ?", (a.task_id,)).fetchone()
        if row is None or row["state"] != taskstate.PENDING:
            ignored += 1
            continue
        node, message = _placement(conn, a.node, a.message)
        if node is not None:
            conn.execute(
                "UPDATE tasks SET node = ?, state = 'assigned', message = ?, updated_at = ?, version = ?"
                " WHERE id = ?",
                (node, message, cmd.at, index, a.task_id),
            )
            assigned += 1
        else:
            conn.execute(
                "UPDATE tasks SET message = ?, updated_at = ?, version = ? WHERE id = ?",
                (message, cmd.at, index, a.task_id),
            )
            pending += 1
    return {"assigned": assigned, "pending": pending, "ignored": ignored}


def _set_task_statuses(conn: sqlite3.Connection, index: int, cmd: c.SetTaskStatuses) -> Any:
    applied = ignored = 0
    for u in cmd.updates:
        row = conn.execute("SELECT node, state FROM tasks WHERE id = ?", (u.task_id,)).fetchone()
        if (
            row is None
            or (u.node is not None and u.node != row["node"])
            or u.state not in taskstate.RANK
            or (u.health is not None and u.health not in HEALTH_STATES)
            or not taskstate.can_move(row["state"], u.state)
        ):
            ignored += 1
            continue
        starts = u.state == taskstate.RUNNING and row["state"] != taskstate.RUNNING
        conn.execute(
            "UPDATE tasks SET state = ?, message = ?, updated_at = ?, version = ?,"
            " container_id = coalesce(?, container_id), exit_code = coalesce(?, exit_code),"
            " health = coalesce(?, health), started_at = CASE WHEN ? THEN ? ELSE started_at END"
            " WHERE id = ?",
            (u.state, u.message, u.at, index, u.container_id, u.exit_code, u.health, starts, u.at, u.task_id),
        )
        applied += 1
    return {"applied": applied, "ignored": ignored}


def _set_tasks_desired(conn: sqlite3.Connection, index: int, cmd: c.SetTasksDesired) -> Any:
    changed = ignored = 0
    for task_id in cmd.task_ids:
        # An empty message keeps the task's own (its last status report says more than nothing).
        cur = conn.execute(
            "UPDATE tasks SET desired_state = ?, message = CASE WHEN ? = '' THEN message ELSE ? END,"
            f" updated_at = ?, version = ? WHERE id = ? AND state NOT IN {taskstate.TERMINAL_SQL}",
            (cmd.desired_state, cmd.message, cmd.message, cmd.at, index, task_id),
        )
        if cur.rowcount:
            changed += 1
        else:
            ignored += 1
    return {"changed": changed, "ignored": ignored}


def _remove_tasks(conn: sqlite3.Connection, index: int, cmd: c.RemoveTasks) -> Any:
    removed = 0
    for task_id in cmd.task_ids:
        removed += conn.execute(
            f"DELETE FROM tasks WHERE id = ? AND state IN {taskstate.TERMINAL_SQL}", (task_id,)
        ).rowcount
    return {"removed": removed, "kept": len(cmd.task_ids) - removed}


# -- backups ----------------------------------------------------------------------------------------


def _import_rows(conn: sqlite3.Connection, index: int, cmd: c.ImportRows) -> Any:
    if cmd.table not in TABLES:
        raise CommandError("invalid", f"cannot import into table {cmd.table!r}")
    known = {r[1] for r in conn.execute(f"PRAGMA table_info({cmd.table})")}
    for row in cmd.rows:
        unknown = set(row) - known
        if unknown:
            raise CommandError("invalid", f"table {cmd.table} has no columns {sorted(unknown)}")
        columns = sorted(row)
        placeholders = ", ".join("?" * len(columns))
        conn.execute(
            f"INSERT OR REPLACE INTO {cmd.table} ({', '.join(columns)}) VALUES ({placeholders})",
            [row[col] for col in columns],
        )
    return {"table": cmd.table, "rows": len(cmd.rows)}


def _reset_managers(conn: sqlite3.Connection, index: int, cmd: c.ResetManagers) -> Any:
    conn.execute("DELETE FROM nodes WHERE role = 'manager'")
    _insert_manager(conn, index, cmd.manager, "ready", cmd.at)
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


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


_HANDLERS: dict[type[Any], Handler] = {
    c.InitCluster: _init_cluster,
    c.CreateToken: _create_token,
    c.RegisterManager: _register_manager,
    c.SetNodeState: _set_node_state,
    c.RemoveNode: _remove_node,
    c.CreateService: _create_service,
    c.UpdateService: _update_service,
    c.RemoveService: _remove_service,
    c.ImportRows: _import_rows,
    c.ResetManagers: _reset_managers,
    c.RegisterWorker: _register_worker,
    c.UpdateNode: _update_node,
    c.SetNodeAvailability: _set_node_availability,
    c.RollbackService: _rollback_service,
    c.SetUpdateStatus: _set_update_status,
    c.CreateTasks: _create_tasks,
    c.AssignTasks: _assign_tasks,
    c.SetTaskStatuses: _set_task_statuses,
    c.SetTasksDesired: _set_tasks_desired,
    c.RemoveTasks: _remove_tasks,
    c.SetClusterCA: _set_cluster_ca,
    c.RecordCert: _record_cert,
    c.CreateSecret: _create_secret,
    c.RemoveSecret: _remove_secret,
}
