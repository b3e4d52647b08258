"""What the task commands do to the state (see apply.py: deterministic, a handler returns the result
or raises CommandError).

Task commands carry many items, proposed by the leader from what it saw a moment ago: an item that no
longer fits the state (unknown task, wrong node, a move backwards) is skipped and counted, never
refused, so one stale item does not fail the rest.
"""

from __future__ import annotations

import sqlite3
import typing
from collections.abc import Callable
from typing import Any

import msgspec

from warren.spec import taskstate
from warren.spec.service import to_doc
from warren.store import commands as c
from warren.store.schema import json_text

HEALTH_STATES = frozenset(typing.get_args(taskstate.Health))


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


def _create_tasks(conn: sqlite3.Connection, index: int, cmd: c.CreateTasks) -> Any:
    created = skipped = 0
    made: list[tuple[str, str, int | None, str | None, str, str]] = []  # for the events
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
                json_text(to_doc(t.spec)),
                t.spec_digest,
                cmd.at,
                cmd.at,
                index,
            ),
        )
        created += 1
        made.append((t.task_id, t.service_id, t.slot, node, state, message))
    return {"created": created, "skipped": skipped, "_created": made}


def _assign_tasks(conn: sqlite3.Connection, index: int, cmd: c.AssignTasks) -> Any:
    assigned = pending = ignored = 0
    placed: list[tuple[str, str, str]] = []  # for the events
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
            placed.append((a.task_id, node, message))
        else:
            conn.execute(
                "UPDATE tasks SET message = ?, updated_at = ?, version = ? WHERE id = ?",
                (message, cmd.at, index, a.task_id),
            )
            pending += 1
    return {"assigned": assigned, "pending": pending, "ignored": ignored, "_assigned": placed}


# Task IDs per SELECT of a status batch (SQLite allows 32,766 parameters; a batch holds at most
# OrchestratorSettings.status_batch_max updates, 1,000 by default, so usually one).
_READ_CHUNK = 900

_SET_STATUS_SQL = (
    "UPDATE tasks SET state = ?, message = ?, updated_at = ?, version = ?,"
    " container_id = coalesce(?, container_id), exit_code = coalesce(?, exit_code),"
    " health = coalesce(?, health), started_at = CASE WHEN ? THEN ? ELSE started_at END,"
    " ports = CASE WHEN ? THEN ? ELSE ports END"
    " WHERE id = ?"
)


def _set_task_statuses(conn: sqlite3.Connection, index: int, cmd: c.SetTaskStatuses) -> Any:
    """Each update checked against the task as the updates before it in the batch left it, as if
    applied one by one; but read with one SELECT and written with one executemany (a statement per
    task cost 40 statements for a batch of 20; docs/decisions.md)."""
    ids = list(dict.fromkeys(u.task_id for u in cmd.updates))
    current: dict[str, tuple[str | None, str]] = {}  # task ID -> (node, state), as the batch goes
    owner: dict[str, tuple[str, int | None]] = {}  # task ID -> (service ID, slot), for the events
    for start in range(0, len(ids), _READ_CHUNK):
        chunk = ids[start : start + _READ_CHUNK]
        marks = ",".join("?" * len(chunk))
        for row in conn.execute(
            f"SELECT id, node, state, service_id, slot FROM tasks WHERE id IN ({marks})", chunk
        ):
            current[row[0]] = (row[1], row[2])
            owner[row[0]] = (row[3], row[4])
    rows: list[tuple[Any, ...]] = []
    moves: list[tuple[Any, ...]] = []  # for the events (warren.store.events)
    ignored = 0
    for u in cmd.updates:
        task = current.get(u.task_id)
        if (
            task is None
            or (u.node is not None and u.node != task[0])
            or u.state not in taskstate.RANK
            or (u.health is not None and u.health not in HEALTH_STATES)
            or not taskstate.can_move(task[1], u.state)
        ):
            ignored += 1
            continue
        starts = u.state == taskstate.RUNNING and task[1] != taskstate.RUNNING
        if task[1] != u.state:  # a health or ports report is no move
            service_id, slot = owner[u.task_id]
            moves.append((u.task_id, service_id, slot, task[0], task[1], u.state, u.message, u.exit_code,
                          u.at))
        current[u.task_id] = (task[0], u.state)
        # Ports given replace the stored ones (none: NULL); left out, they stay.
        given = not isinstance(u.ports, msgspec.UnsetType)
        ports = json_text(u.ports) if given and u.ports else None
        rows.append(
            (u.state, u.message, u.at, index, u.container_id, u.exit_code, u.health, starts, u.at,
             given, ports, u.task_id)
        )
    conn.executemany(_SET_STATUS_SQL, rows)
    return {"applied": len(rows), "ignored": ignored, "_moves": moves}


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


HANDLERS: dict[type[Any], Callable[[sqlite3.Connection, int, Any], Any]] = {
    c.CreateTasks: _create_tasks,
    c.AssignTasks: _assign_tasks,
    c.SetTaskStatuses: _set_task_statuses,
    c.SetTasksDesired: _set_tasks_desired,
    c.RemoveTasks: _remove_tasks,
}
