"""What every SQLite file Warren keeps (a manager's warren.db and snapshots, a worker's worker.db) shares:
telling a damaged file from one that cannot be read for another reason, setting a damaged file
aside, and upgrading a file written by an older Warren through its ordered migrations.

Damaged means SQLite itself says so: "file is not a database" (SQLITE_NOTADB), "database disk image
is malformed" (SQLITE_CORRUPT), or an integrity check that does not answer "ok". Anything else
(permission denied, disk full, an I/O error, a read-only file system) is not proof that the file is
bad, so it is never a reason to set the file aside: the caller stops with a clear error instead.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from warren.errors import CorruptStateError, StorageError

# SQLite's primary result codes that mean the file's content is damaged (sqlite3.h).
SQLITE_CORRUPT = 11
SQLITE_NOTADB = 26
DAMAGED_CODES = frozenset({SQLITE_CORRUPT, SQLITE_NOTADB})

# The files SQLite keeps beside a database in WAL mode; they go wherever the database goes.
COMPANIONS = ("-wal", "-shm", "-journal")


def is_damage(exc: sqlite3.Error) -> bool:
    """True if `exc` says the file's content is damaged (not: unreadable, full, locked, ...)."""
    code = getattr(exc, "sqlite_errorcode", None)
    return isinstance(code, int) and (code & 0xFF) in DAMAGED_CODES


def check_integrity(conn: sqlite3.Connection, path: str, *, quick: bool = True) -> None:
    """Raise CorruptStateError if the open database at `path` is damaged; StorageError if it cannot be
    read for another reason (permission, I/O error)."""
    pragma = "quick_check" if quick else "integrity_check"
    try:
        row = conn.execute(f"PRAGMA {pragma}").fetchone()  # pragma is one of two constants
    except sqlite3.Error as exc:
        raise classify(exc, path) from exc
    if row is None or row[0] != "ok":
        raise CorruptStateError(f"{path}: damaged SQLite file ({row[0] if row else 'no answer'})")


def classify(exc: sqlite3.Error, path: str, doing: str = "read") -> StorageError:
    """The Warren error for an SQLite error on `path`: CorruptStateError for damage, else StorageError."""
    if is_damage(exc):
        return CorruptStateError(f"{path}: damaged SQLite file ({exc})")
    name = getattr(exc, "sqlite_errorname", None) or type(exc).__name__
    return StorageError(f"cannot {doing} {path}: {exc} ({name})")


def set_aside(path: str, reason: str, log: logging.Logger, *, clock: Callable[[], float] = time.time) -> str:
    """Rename the damaged database at `path` (and its WAL and shared-memory files) to
    `<path>.damaged-<UTC time>`, log it at WARNING with `reason`, and return the new name.

    A rename, not a delete: the bytes stay for whoever wants to know what the disk did. Raises
    StorageError if the file cannot be moved (then nothing is thrown away either).
    """
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(clock()))
    target = f"{path}.damaged-{stamp}"
    n = 1
    while os.path.exists(target):  # two in the same second (a crash loop): keep both
        n += 1
        target = f"{path}.damaged-{stamp}-{n}"
    try:
        os.replace(path, target)
        for suffix in COMPANIONS:
            if os.path.exists(path + suffix):
                os.replace(path + suffix, target + suffix)
    except OSError as exc:
        raise StorageError(f"cannot move the damaged {path} aside: {exc}") from exc
    log.warning("%s is damaged (%s): moved aside to %s", path, " ".join(reason.split()), target)
    return target


# -- migrations -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Migration:
    """One step from schema version `source` to `source + 1`: `statements` run in order (plain SQL
    statements, no transaction control: the caller runs every step in one transaction). A step is
    frozen once released: it spells out its own change, never today's DDL, which later steps move on."""

    source: int
    description: str
    statements: tuple[str, ...]


def check_chain(migrations: Sequence[Migration], current: int) -> None:
    """Raise ValueError unless `migrations` go one version at a time up to `current` (a module-load
    check: a gap or a duplicate would leave some file stuck at an old version)."""
    for prev, step in zip(migrations, migrations[1:], strict=False):
        if step.source != prev.source + 1:
            raise ValueError(f"migration from version {step.source} follows one from {prev.source}")
    if migrations and migrations[-1].source + 1 != current:
        raise ValueError(f"the last migration ends at {migrations[-1].source + 1}, not at {current}")


def upgrade(
    conn: sqlite3.Connection,
    found: int,
    migrations: Sequence[Migration],
    current: int,
    record: Callable[[sqlite3.Connection, Migration], None],
) -> list[Migration]:
    """Apply every step from version `found` up to `current` in ONE transaction (all or nothing: a
    crash or an error leaves the file at `found`). `record` writes the new version inside the same
    transaction. `conn` must be in autocommit mode (isolation_level=None). Returns the steps applied.

    Raises CorruptStateError for a version with no way up (newer than `current`, or older than the
    oldest migration): such a file is left untouched.
    """
    if found == current:
        return []
    steps = [m for m in migrations if m.source >= found]
    if found > current or not steps or steps[0].source != found:
        oldest = migrations[0].source if migrations else current
        raise CorruptStateError(
            f"schema version {found}: this Warren reads versions {oldest} to {current}"
            + (" (the file was written by a newer Warren)" if found > current else "")
        )
    conn.execute("BEGIN IMMEDIATE")
    try:
        for step in steps:
            for statement in step.statements:
                conn.execute(statement)
            record(conn, step)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return steps
