"""The worker's memory across restarts and partitions: `<data-dir>/worker.db` (SQLite, WAL).

Three things are kept:

- the last assignments a manager sent (the TASK documents and their digest): cut off from every
  manager, the worker keeps running them; after a restart it tells the leader which digest it has;
- the local view of each task: its container, the last state the worker decided on, how often it
  restarted the task in place (the restart policy's `max_attempts` counts these);
- the queue of status updates no manager has acknowledged yet. Updates are merged per task (the
  latest state wins, as on the leader), sent in the order they were made, and deleted only after a
  manager answered 200, so an exit reported while every manager was away is delivered later even if
  the worker restarts meanwhile (with everything it says: a `running` update keeps its ports).

All of it can be lost without harm to the cluster: the leader's state is the truth. So a damaged
worker.db (SQLite says it is not a database or is malformed, or its integrity check fails) is moved
aside at start (`worker.db.damaged-<time>`, logged at WARNING with the reason) and the worker starts
with an empty cache: it adopts its running containers by their labels and takes its assignments from
the managers (the worker's identity and certificates are in node.json and tls/, not here). A file
that cannot be read for another reason (permission denied, disk full, I/O error) or that a newer
Warren wrote stops the worker with that error instead: nothing is thrown away on a guess. A file of
an older schema is upgraded by MIGRATIONS, every record kept.
"""

from __future__ import annotations

import logging
import os
import sqlite3
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from warren import sqlitefile
from warren.errors import CorruptStateError, StorageError
from warren.spec.ports import task_ports_problem
from warren.sqlitefile import Migration

log = logging.getLogger(__name__)

FILE_NAME = "worker.db"
# Bumped when a table changes shape, together with a step in MIGRATIONS from the version before.
SCHEMA_VERSION = 2

_SCHEMA_MIGRATIONS = """CREATE TABLE IF NOT EXISTS schema_migrations (
    version      INTEGER PRIMARY KEY,
    how          TEXT NOT NULL CHECK (how IN ('created', 'migrated')),
    description  TEXT NOT NULL
)"""

# The way up, one version at a time, oldest first; run in one transaction at open.
MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1, "schema_migrations: the file records the schema versions it went through", (_SCHEMA_MIGRATIONS,)
    ),
)
sqlitefile.check_chain(MIGRATIONS, SCHEMA_VERSION)

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS meta (
    key    TEXT PRIMARY KEY,
    value  TEXT NOT NULL
);
-- The schema versions this file went through: 'created' at one, or 'migrated' to it.
{_SCHEMA_MIGRATIONS};
CREATE TABLE IF NOT EXISTS assignments (
    task_id  TEXT PRIMARY KEY,
    doc      TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS local_tasks (
    task_id       TEXT PRIMARY KEY,
    driver        TEXT NOT NULL,
    container_id  TEXT,
    state         TEXT NOT NULL,
    restarts      INTEGER NOT NULL DEFAULT 0,
    message       TEXT NOT NULL DEFAULT '',
    exit_code     INTEGER,
    restartable   INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS outbox (
    task_id  TEXT PRIMARY KEY,
    seq      INTEGER NOT NULL,
    doc      TEXT NOT NULL
);
-- The queue's order: the next sequence number and the oldest batch without a scan of the queue.
CREATE INDEX IF NOT EXISTS outbox_seq ON outbox (seq);
"""


# Longest message a status update carries (the API refuses more than 4096 characters); characters.
MAX_MESSAGE_CHARS = 1024


@dataclass(frozen=True, slots=True)
class StatusUpdate:
    """One task status report, as the worker protocol's `updates` items (a longer message, e.g. a
    runtime's error with a whole stack in it, is cut to MAX_MESSAGE_CHARS)."""

    task_id: str
    state: str
    message: str
    at: float  # epoch seconds, when the worker saw it
    container_id: str | None = None
    exit_code: int | None = None
    health: str | None = None
    # Where this node reaches the task's ingress publishes, {"P": hostport} (warren.spec.ports), with
    # its `running` update; None: nothing reported (the manager keeps what it has).
    ports: Mapping[str, int] | None = None

    def __post_init__(self) -> None:
        if len(self.message) > MAX_MESSAGE_CHARS:
            object.__setattr__(self, "message", self.message[: MAX_MESSAGE_CHARS - 3] + "...")

    def to_doc(self) -> dict[str, Any]:
        doc = {
            "task_id": self.task_id,
            "state": self.state,
            "message": self.message,
            "at": self.at,
            "container_id": self.container_id,
            "exit_code": self.exit_code,
            "health": self.health,
        }
        if self.ports is not None:  # only then: a manager of an earlier version refuses the field
            doc["ports"] = dict(self.ports)
        return doc

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> StatusUpdate:
        ports = doc.get("ports")
        return cls(
            task_id=str(doc["task_id"]),
            state=str(doc["state"]),
            message=str(doc.get("message") or ""),
            at=float(doc["at"]),
            container_id=doc.get("container_id"),
            exit_code=doc.get("exit_code"),
            health=doc.get("health"),
            ports=ports if isinstance(ports, dict) and task_ports_problem(ports) is None else None,
        )

    def merged_after(self, older: StatusUpdate) -> StatusUpdate:
        """This update replacing `older` of the same task: the newer state, message and exit code, and
        the container, health and ports last known (older ports only of the same container: a restart
        in place reports its new container's own)."""
        container_id = self.container_id if self.container_id is not None else older.container_id
        ports = self.ports
        if ports is None and container_id == older.container_id:
            ports = older.ports
        return StatusUpdate(
            task_id=self.task_id,
            state=self.state,
            message=self.message,
            at=self.at,
            container_id=container_id,
            exit_code=self.exit_code,
            health=self.health if self.health is not None else older.health,
            ports=ports,
        )


@dataclass(slots=True)
class LocalTask:
    """What the worker itself knows and decided about one task.

    `state` is one of the task states the worker reports (starting, running, complete, failed,
    shutdown, rejected) or `restarting`: cut off from the managers, the task's container exited and
    is started again in place after `restart_at` (not persisted: a restart recomputes it).
    """

    task_id: str
    driver: str
    container_id: str | None
    state: str
    restarts: int = 0
    message: str = ""
    exit_code: int | None = None
    # The task ended by exiting or failing its health check (not by failing to start, nor by being
    # stopped): cut off from the managers, its restart policy may start it again in place.
    restartable: bool = False
    restart_at: float | None = None  # monotonic seconds


class WorkerCache:
    """The open worker.db. Single-threaded (the agent's event loop); every write is its own
    transaction, small enough to run inline."""

    def __init__(self, conn: sqlite3.Connection, path: str) -> None:
        self._conn = conn
        self.path = path

    @classmethod
    def open(cls, data_dir: str) -> WorkerCache:
        """The worker.db in `data_dir`: created, upgraded, or (damaged) moved aside and created anew.
        StorageError if it cannot be read or written; CorruptStateError if a newer Warren wrote it."""
        path = os.path.join(data_dir, FILE_NAME)
        try:
            return cls(_open(path), path)
        except _Damaged as exc:
            sqlitefile.set_aside(
                path, f"{exc}; starting with an empty cache, the managers send the assignments again", log
            )
        return cls(_open(path), path)

    def close(self) -> None:
        self._conn.close()

    # -- assignments ------------------------------------------------------------------------------

    def assignments(self) -> tuple[str | None, dict[str, dict[str, Any]]]:
        """(digest, TASK documents by task ID) last received; digest None if nothing was ever saved."""
        row = self._conn.execute("SELECT value FROM meta WHERE key = 'digest'").fetchone()
        docs = {
            task_id: orjson.loads(doc)
            for task_id, doc in self._conn.execute("SELECT task_id, doc FROM assignments")
        }
        return (None if row is None else str(row[0])), docs

    def save_assignments(
        self, digest: str, changed: Iterable[Mapping[str, Any]], removed: Iterable[str] = ()
    ) -> None:
        """The assignments a manager sent with `digest`, saved as a change to the last ones: the TASK
        documents new or changed since, and the IDs of the tasks no longer assigned (a node's other
        tasks are not written again every time one of them changes)."""
        with self._write():
            self._conn.executemany("DELETE FROM assignments WHERE task_id = ?", [(t,) for t in removed])
            self._conn.executemany(
                "INSERT OR REPLACE INTO assignments (task_id, doc) VALUES (?, ?)",
                [(str(t["task_id"]), orjson.dumps(t)) for t in changed],
            )
            self._conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('digest', ?)", (digest,))

    # -- local view -------------------------------------------------------------------------------

    def local_tasks(self) -> dict[str, LocalTask]:
        rows = self._conn.execute(
            "SELECT task_id, driver, container_id, state, restarts, message, exit_code, restartable "
            "FROM local_tasks"
        )
        return {
            r[0]: LocalTask(r[0], r[1], r[2], r[3], int(r[4]), r[5], r[6], bool(r[7])) for r in rows
        }

    def put_local(self, task: LocalTask, update: StatusUpdate | None = None) -> None:
        """Save the task's local view and queue `update` (its report, see `enqueue`) in the same
        transaction: after a crash the two agree (no final state kept whose report was never queued)."""
        with self._write():
            self._conn.execute(
                "INSERT OR REPLACE INTO local_tasks "
                "(task_id, driver, container_id, state, restarts, message, exit_code, restartable) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (task.task_id, task.driver, task.container_id, task.state, task.restarts, task.message,
                 task.exit_code, int(task.restartable)),
            )
            if update is not None:
                self._enqueue(update)

    def drop_local(self, task_id: str) -> None:
        with self._write():
            self._conn.execute("DELETE FROM local_tasks WHERE task_id = ?", (task_id,))

    # -- status queue -----------------------------------------------------------------------------

    def enqueue(self, update: StatusUpdate) -> None:
        """Queue `update`, merged with a queued one of the same task; it goes to the back of the queue."""
        with self._write():
            self._enqueue(update)

    def _enqueue(self, update: StatusUpdate) -> None:
        row = self._conn.execute("SELECT doc FROM outbox WHERE task_id = ?", (update.task_id,)).fetchone()
        if row is not None:
            update = update.merged_after(StatusUpdate.from_doc(orjson.loads(row[0])))
        (seq,) = self._conn.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM outbox").fetchone()
        self._conn.execute(
            "INSERT OR REPLACE INTO outbox (task_id, seq, doc) VALUES (?, ?, ?)",
            (update.task_id, seq, orjson.dumps(update.to_doc())),
        )

    def pending(self, limit: int | None = None) -> list[tuple[int, StatusUpdate]]:
        """Queued updates, oldest first (the `limit` oldest), each with its sequence number (for `ack`)."""
        rows = self._conn.execute(
            "SELECT seq, doc FROM outbox ORDER BY seq LIMIT ?", (-1 if limit is None else limit,)
        )
        return [(int(seq), StatusUpdate.from_doc(orjson.loads(doc))) for seq, doc in rows]

    def pending_state(self, task_id: str) -> str | None:
        """The state of the task's queued (unacknowledged) update, if any."""
        row = self._conn.execute("SELECT doc FROM outbox WHERE task_id = ?", (task_id,)).fetchone()
        return None if row is None else str(orjson.loads(row[0])["state"])

    def ack(self, sent: list[tuple[int, StatusUpdate]]) -> None:
        """A manager accepted `sent`: delete them, except those replaced by a newer update meanwhile."""
        with self._write():
            self._conn.executemany(
                "DELETE FROM outbox WHERE task_id = ? AND seq = ?", [(u.task_id, seq) for seq, u in sent]
            )

    def _write(self) -> _Transaction:
        return _Transaction(self._conn, self.path)


class _Damaged(Exception):
    """SQLite says the file's content is damaged."""


def _open(path: str) -> sqlite3.Connection:
    try:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    except sqlite3.Error as exc:
        raise _error(exc, path) from exc
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        # NORMAL: a commit survives a crash of the worker (not of the machine) without an fsync per
        # status update; the leader's state and a resend cover the rest.
        conn.execute("PRAGMA synchronous=NORMAL")
        try:
            sqlitefile.check_integrity(conn, path)
        except CorruptStateError as exc:
            raise _Damaged(str(exc)) from exc
        found = _version(conn)
        if found is None:
            conn.executescript(
                f"BEGIN IMMEDIATE; {_SCHEMA}"
                f"INSERT OR REPLACE INTO meta (key, value) VALUES ('schema', '{SCHEMA_VERSION}');"
                "INSERT OR IGNORE INTO schema_migrations (version, how, description) "
                f"VALUES ({SCHEMA_VERSION}, 'created', 'created at schema version {SCHEMA_VERSION}');"
                "COMMIT;"
            )
        else:
            try:
                steps = sqlitefile.upgrade(conn, found, MIGRATIONS, SCHEMA_VERSION, _record)
            except CorruptStateError as exc:
                raise CorruptStateError(f"{path}: {exc}") from None
            if steps:
                log.info("%s: schema upgraded from version %d to %d", path, found, SCHEMA_VERSION)
    except sqlite3.Error as exc:
        conn.close()
        raise _error(exc, path) from exc
    except BaseException:
        conn.close()
        raise
    return conn


def _version(conn: sqlite3.Connection) -> int | None:
    """The file's schema version; None for a new file (no tables yet)."""
    if conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'").fetchone() is None:
        return None
    row = conn.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
    if row is None:
        return None  # created up to the tables, not yet to the version row: create it again
    if not str(row[0]).isdigit():
        raise _Damaged(f"schema version {row[0]!r} is not a number")
    return int(row[0])


def _record(conn: sqlite3.Connection, step: Migration) -> None:
    conn.execute(
        "INSERT OR REPLACE INTO schema_migrations (version, how, description) VALUES (?, 'migrated', ?)",
        (step.source + 1, step.description),
    )
    conn.execute("UPDATE meta SET value = ? WHERE key = 'schema'", (str(step.source + 1),))


def _error(exc: sqlite3.Error, path: str) -> Exception:
    error = sqlitefile.classify(exc, path, "open")
    return _Damaged(str(error)) if isinstance(error, CorruptStateError) else error


class _Transaction:
    def __init__(self, conn: sqlite3.Connection, path: str) -> None:
        self._conn = conn
        self._path = path

    def __enter__(self) -> None:
        self._conn.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        if exc is None:
            try:
                self._conn.execute("COMMIT")
                return
            except sqlite3.Error as err:
                exc = err
        try:
            self._conn.execute("ROLLBACK")
        except sqlite3.Error:
            pass  # no transaction left to roll back (SQLite already did)
        if isinstance(exc, sqlite3.Error):
            raise StorageError(f"cannot write {self._path}: {exc}") from exc
