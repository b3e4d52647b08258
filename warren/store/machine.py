"""The SQLite state machine that Raft replicates into: apply, snapshot, restore.

`<data-dir>/warren.db` (WAL). Every committed batch is applied in one transaction, each command in its
own savepoint, so a refused command (conflict, bad token, malformed) answers with an error and
changes nothing, while the rest of the batch applies. Anything else (disk full, I/O error) raises,
which stops the node: an entry is never skipped.

The file needs no fsync of its own: the Raft log is durable, and the state is rebuilt from the latest
snapshot plus the log on every start (the core's first work item is always a restore). So a damaged
state file found at start costs nothing but a rebuild: it is moved aside (`warren.db.damaged-<time>`,
logged at WARNING) and the state comes back from snapshot + log. One that cannot be read for another
reason (permission denied, I/O error) stops the manager with that error instead.

A snapshot (the latest one, read at start, or one installed from a peer) of an older schema version
is upgraded by the migrations of warren.store.schema before it becomes the state.
"""

from __future__ import annotations

import logging
import os
import shutil
import sqlite3
from collections.abc import Callable
from typing import Any

import orjson

from warren import raft_bridge, sqlitefile
from warren.durable import fsync_file
from warren.errors import CorruptStateError, StorageError
from warren.store import apply as handlers
from warren.store import events, schema
from warren.store.commands import CommandError, UnknownCommandError, decode

log = logging.getLogger(__name__)

DB_NAME = "warren.db"

EntryLoop = Callable[
    [sqlite3.Connection, list[tuple[int, int, bytes]], raft_bridge.Step, raft_bridge.Refusal], list[bytes]
]


def _refusal(exc: Exception, index: int) -> bytes | None:
    """The response of a refused command (the entry loop rolls its savepoint back), or None for an
    error that must stop the node (disk full, I/O error, a bug)."""
    if isinstance(exc, CommandError):
        if isinstance(exc, UnknownCommandError):
            # Every other manager may have applied it: this one's state now differs.
            log.error("log entry %d not applied: %s", index, exc.message)
        return failed(exc.code, exc.message)
    if isinstance(exc, sqlite3.IntegrityError):
        return failed("conflict", f"refused by a constraint: {exc}")
    return None


def connect(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = OFF")
    return conn


def ok(result: Any) -> bytes:
    return orjson.dumps({"ok": result})


def failed(code: str, message: str) -> bytes:
    return orjson.dumps({"error": code, "message": message})


class Store:
    """Implements warren.raft_bridge.StateMachine over SQLite. Used from the event loop thread only."""

    def __init__(
        self,
        data_dir: str,
        *,
        entry_loop: EntryLoop = raft_bridge.apply_entries,
        event_ring: events.EventRing | None = None,
    ) -> None:
        self.path = os.path.join(data_dir, DB_NAME)
        # Each committed entry in its savepoint: the compiled bridge's loop, or (benches and tests
        # comparing the two) the pure one.
        self._entry_loop = entry_loop
        self.applied_index = 0
        # Called (in the event loop's thread) after every applied batch and every restore: the leader's
        # dispatcher and reconciler wake on it instead of polling the state.
        self.on_change: list[Callable[[], None]] = []
        # The cluster events derived from the applied commands (warren.store.events), published to
        # the ring once their batch committed.
        self.events = event_ring if event_ring is not None else events.EventRing()
        self._pending: list[events.Event] = []
        self._service_names: dict[str, str] = {}  # service ID -> name, for the task events
        self._set_aside_if_damaged()
        self.conn = self._open_fresh()

    # -- StateMachine ---------------------------------------------------------------------------------

    def apply(self, entries: list[tuple[int, int, bytes]]) -> list[bytes]:
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            responses = self._entry_loop(conn, entries, self._step, _refusal)
            if entries:
                self.applied_index = entries[-1][0]
                conn.execute(
                    "INSERT INTO meta (key, value) VALUES ('applied_index', ?) "
                    "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    (str(self.applied_index),),
                )
            conn.execute("COMMIT")
        except BaseException:
            self._pending.clear()
            conn.execute("ROLLBACK")
            raise
        if self._pending:
            pending, self._pending = self._pending, []
            self.events.publish(pending)
        if entries:
            self._changed()
        return responses

    def _step(self, index: int, payload: bytes) -> bytes:
        """One entry's command applied (in its savepoint, by the entry loop): its response, and its
        events pending until the batch commits."""
        cmd = decode(payload)
        result = handlers.apply(self.conn, index, cmd)
        self._derive(index, cmd, result)
        return ok(result)

    def _derive(self, index: int, cmd: Any, result: Any) -> None:
        """Queue `cmd`'s events. Never raises: a fault here costs the events, never the entry."""
        try:
            if len(self._service_names) > 10_000:
                self._service_names.clear()
            drafts = events.derive(self.conn, cmd, result, self._service_names)
        except Exception:
            log.exception("log entry %d: its events could not be derived", index)
            if isinstance(result, dict):
                for key in events.PRIVATE_KEYS:
                    result.pop(key, None)
            return
        if not drafts:
            return
        pending = self._pending
        # Commands proposed together share an entry: their events count on within it.
        ordinal = 0
        if pending and pending[-1].index == index:
            ordinal = pending[-1].ordinal + 1
        default_time = getattr(cmd, "at", None)
        if not isinstance(default_time, float | int):
            default_time = self.events.clock()
        for kind, action, actor, attributes, message, at in drafts:
            pending.append(
                events.Event(
                    index, ordinal, float(at if at is not None else default_time), kind, action, actor,
                    attributes, message,
                )
            )
            ordinal += 1

    def snapshot(self, path: str) -> None:
        """SQLite online backup of the applied state into `path` (fsynced)."""
        self.backup_to(path)

    def restore(self, path: str | None) -> None:
        """Replace the state with the snapshot at `path` (None: empty) by an atomic rename."""
        self.conn.close()
        if path is None:
            self.conn = self._open_fresh()
        else:
            tmp = self.path + ".restore"
            shutil.copyfile(path, tmp)
            check_state_file(tmp, versions=schema.READABLE_VERSIONS)
            upgrade_file(tmp)
            self._remove_db_files()
            fsync_file(tmp)
            os.replace(tmp, self.path)
            self.conn = connect(self.path)
            row = self.conn.execute("SELECT value FROM meta WHERE key = 'applied_index'").fetchone()
            self.applied_index = int(row[0]) if row is not None else 0
        self.events.reset(self.applied_index)
        log.info("state restored from %s (applied index %d)", path or "empty state", self.applied_index)
        self._changed()

    # -- helpers --------------------------------------------------------------------------------------

    def backup_to(self, path: str) -> None:
        """Consistent copy of the current state into a new file at `path`, fsynced."""
        dest = sqlite3.connect(path, isolation_level=None)
        try:
            self.conn.backup(dest)
            dest.execute("PRAGMA journal_mode = DELETE")
            dest.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('content_digest', ?)",
                (schema.content_digest(dest),),
            )
        finally:
            dest.close()
        fsync_file(path)

    def close(self) -> None:
        self.conn.close()

    def _changed(self) -> None:
        for listener in self.on_change:
            listener()

    def _open_fresh(self) -> sqlite3.Connection:
        self._remove_db_files()
        conn = connect(self.path)
        schema.create(conn)
        self.applied_index = 0
        if hasattr(self, "events"):
            self.events.reset(0)
        return conn

    def _set_aside_if_damaged(self) -> None:
        """Move a damaged state file left by an earlier run aside (it is rebuilt anyway, but its bytes
        may tell what the disk did); an intact one is simply replaced. StorageError if it cannot even
        be read (permission, I/O): that is no proof of damage, and the manager stops."""
        if not os.path.exists(self.path):
            return
        try:
            conn = sqlite3.connect(f"file:{self.path}?mode=rw", uri=True, isolation_level=None)
        except sqlite3.Error as exc:
            error = sqlitefile.classify(exc, self.path)
            if not isinstance(error, CorruptStateError):
                raise error from exc
            sqlitefile.set_aside(self.path, str(exc), log)
            return
        damage = None
        try:
            sqlitefile.check_integrity(conn, self.path)
        except CorruptStateError as exc:
            damage = str(exc)
        finally:
            conn.close()
        if damage is not None:
            sqlitefile.set_aside(self.path, f"{damage}; the state is rebuilt from snapshot and log", log)

    def _remove_db_files(self) -> None:
        for suffix in ("", "-wal", "-shm"):
            try:
                os.unlink(self.path + suffix)
            except FileNotFoundError:
                pass
            except OSError as exc:
                raise StorageError(f"cannot remove {self.path + suffix}: {exc}") from exc


def upgrade_file(path: str) -> None:
    """Upgrade the state file at `path` (checked already) to this Warren's schema, every record kept."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        steps = schema.upgrade(conn)
    except sqlite3.Error as exc:
        raise sqlitefile.classify(exc, path, "upgrade") from exc
    finally:
        conn.close()
    if steps:
        log.info(
            "%s: state schema upgraded from version %d to %d (%s)",
            path,
            steps[0].source,
            schema.SCHEMA_VERSION,
            "; ".join(step.description for step in steps),
        )


def check_state_file(path: str, *, versions: tuple[int, ...] = (schema.SCHEMA_VERSION,)) -> None:
    """Raise CorruptStateError unless `path` is an intact Warren state file of one of `versions`.

    A snapshot must be of this schema version (it becomes the state as it is); a backup being
    imported row by row may be older (schema.IMPORTABLE_VERSIONS): its missing columns take defaults.
    """
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise CorruptStateError(f"{path}: not a Warren state file ({exc})") from None
    try:
        try:
            check = conn.execute("PRAGMA integrity_check").fetchone()
        except sqlite3.DatabaseError as exc:
            raise CorruptStateError(f"{path}: not a Warren state file ({exc})") from None
        if check is None or check[0] != "ok":
            raise CorruptStateError(f"{path}: damaged SQLite file ({check[0] if check else 'no answer'})")
        version = schema.schema_version(conn)
        if version not in versions:
            readable = " or ".join(str(v) for v in versions)
            raise CorruptStateError(
                f"{path}: state schema version {version}, this Warren reads version {readable}"
            )
        try:
            recorded = conn.execute("SELECT value FROM meta WHERE key = 'content_digest'").fetchone()
            actual = schema.content_digest(conn)
        except sqlite3.DatabaseError as exc:
            raise CorruptStateError(f"{path}: damaged SQLite file ({exc})") from None
        if recorded is None or recorded[0] != actual:
            raise CorruptStateError(f"{path}: its rows do not match the digest recorded when it was written")
    finally:
        conn.close()
