"""The SQLite schema of the replicated state, in one place.

Every table is part of the replicated state and is rebuilt from snapshot plus log on every start
(see docs/architecture.md). `version` is the Raft log index of an object's last change.
"""

from __future__ import annotations

import hashlib
import sqlite3

import orjson

from warren import sqlitefile
from warren.errors import CorruptStateError
from warren.sqlitefile import Migration

# Bumped when a table changes shape, together with a step in MIGRATIONS that takes a file of the
# version before to this one (a snapshot or state file of a version with no way up is refused).
SCHEMA_VERSION = 8
# Older versions whose backups `cluster init --restore` still imports (missing columns take defaults).
IMPORTABLE_VERSIONS = (1, 2, 3, 4, 5, 6, 7, 8)

# The way up, one version at a time, oldest first; `upgrade` runs the steps a file needs in one
# transaction. A snapshot (from a peer, or the latest one read at start) of any version from the
# first step's source up opens: it is upgraded before it becomes the state. Steps must be
# deterministic (no clock, no random): every manager upgrades the same snapshot to the same state.
MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        3,
        "schema_migrations: each file records the schema versions it went through",
        (
            """CREATE TABLE IF NOT EXISTS schema_migrations (
                version      INTEGER PRIMARY KEY,
                how          TEXT NOT NULL CHECK (how IN ('created', 'migrated')),
                description  TEXT NOT NULL
            )""",
        ),
    ),
    Migration(
        4,
        "configs: named files given to tasks (warren config create), stored as they are",
        (
            """CREATE TABLE IF NOT EXISTS configs (
                id          TEXT PRIMARY KEY,
                name        TEXT NOT NULL UNIQUE,
                data        TEXT NOT NULL,
                size        INTEGER NOT NULL,
                digest      TEXT NOT NULL,
                created_at  REAL NOT NULL,
                updated_at  REAL NOT NULL,
                version     INTEGER NOT NULL
            )""",
        ),
    ),
    Migration(
        5,
        "volumes: the named volumes each node's worker reports, and the removals asked for",
        (
            """CREATE TABLE IF NOT EXISTS volumes (
                node        TEXT NOT NULL,
                name        TEXT NOT NULL,
                driver      TEXT NOT NULL,
                remove_at   REAL,
                created_at  REAL NOT NULL,
                version     INTEGER NOT NULL,
                PRIMARY KEY (node, name, driver)
            )""",
            "CREATE INDEX IF NOT EXISTS volumes_by_name ON volumes (name)",
        ),
    ),
    Migration(
        6,
        "tasks.ports: the host ports a worker reported for a task's ingress publishes",
        # Last, as in DDL: a file upgraded and a file created have the same columns in the same order
        # (the content digest reads rows as they come).
        ("ALTER TABLE tasks ADD COLUMN ports TEXT",),
    ),
    Migration(
        7,
        "nodes.operator_labels: labels an operator sets (node update --label-add), kept apart from the "
        "labels a worker reports, so that a worker registering again does not wipe them",
        ("ALTER TABLE nodes ADD COLUMN operator_labels TEXT NOT NULL DEFAULT '{}'",),
    ),
)
sqlitefile.check_chain(MIGRATIONS, SCHEMA_VERSION)
# The schema versions whose snapshots and state files this Warren opens (upgrading the older ones).
READABLE_VERSIONS = tuple(range(MIGRATIONS[0].source, SCHEMA_VERSION + 1))

# Tables copied by every backup restore, in an order that respects references.
# A backup of a version before a table existed lacks it (configs: before schema 5; volumes: 6).
IMPORTED_TABLES = ("cluster", "nodes", "services", "tasks", "join_tokens", "configs", "volumes")
# The CA, its certificate records and sealed values (the CA key, secrets): copied only by a restore
# given the old cluster's data key (`cluster init --restore-key`), which keeps its CA; otherwise the
# restored cluster has a new CA and data key, and cannot open what the old key sealed.
SEALED_TABLES = ("pki", "certs", "secrets")
# Every replicated table (the content digest covers them all).
TABLES = (*IMPORTED_TABLES, *SEALED_TABLES)

DDL = """
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
-- Bookkeeping of this file, not replicated state (not in TABLES, not in the digest): each schema
-- version it went through, 'created' at that version or 'migrated' to it from the one before.
CREATE TABLE IF NOT EXISTS schema_migrations (
    version      INTEGER PRIMARY KEY,
    how          TEXT NOT NULL CHECK (how IN ('created', 'migrated')),
    description  TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS cluster (
    id            TEXT PRIMARY KEY,
    created_at    REAL NOT NULL,
    next_raft_id  INTEGER NOT NULL,
    version       INTEGER NOT NULL
);
-- A node's `labels` are those its worker reports (replaced at each registration); `operator_labels`
-- those an operator set (node update --label-add), which win for placement. Last: schema 8 added
-- it, and ALTER TABLE appends.
CREATE TABLE IF NOT EXISTS nodes (
    name          TEXT PRIMARY KEY,
    role          TEXT NOT NULL CHECK (role IN ('manager', 'worker')),
    state         TEXT NOT NULL,
    availability  TEXT NOT NULL DEFAULT 'active',
    raft_id       INTEGER UNIQUE,
    api_addr      TEXT,
    raft_addr     TEXT,
    labels        TEXT NOT NULL DEFAULT '{}',
    resources     TEXT NOT NULL DEFAULT '{}',
    secret_hash   TEXT,
    created_at    REAL NOT NULL,
    updated_at    REAL NOT NULL,
    version       INTEGER NOT NULL,
    operator_labels TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS services (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL UNIQUE,
    spec          TEXT NOT NULL,
    previous_spec TEXT,
    update_status TEXT,
    created_at    REAL NOT NULL,
    updated_at    REAL NOT NULL,
    version       INTEGER NOT NULL
);
-- A task's `ports`: the host ports its worker reported for its ingress publishes, {"P": hostport}
-- (JSON; NULL: none; warren.spec.ports). Last: schema 7 added it, and ALTER TABLE appends.
CREATE TABLE IF NOT EXISTS tasks (
    id            TEXT PRIMARY KEY,
    service_id    TEXT NOT NULL,
    slot          INTEGER,
    node          TEXT,
    desired_state TEXT NOT NULL,
    state         TEXT NOT NULL,
    message       TEXT NOT NULL DEFAULT '',
    spec          TEXT NOT NULL DEFAULT '{}',
    spec_digest   TEXT NOT NULL DEFAULT '',
    container_id  TEXT,
    exit_code     INTEGER,
    health        TEXT NOT NULL DEFAULT 'none',
    started_at    REAL,
    created_at    REAL NOT NULL,
    updated_at    REAL NOT NULL,
    version       INTEGER NOT NULL,
    ports         TEXT
);
CREATE INDEX IF NOT EXISTS tasks_by_service ON tasks (service_id);
CREATE INDEX IF NOT EXISTS tasks_by_node ON tasks (node);
CREATE TABLE IF NOT EXISTS join_tokens (
    id            TEXT PRIMARY KEY,
    role          TEXT NOT NULL CHECK (role IN ('manager', 'worker')),
    hash          TEXT NOT NULL UNIQUE,
    created_at    REAL NOT NULL,
    expires_at    REAL NOT NULL,
    revoked       INTEGER NOT NULL DEFAULT 0,
    version       INTEGER NOT NULL
);
-- The cluster CA: its certificate and its private key sealed with the cluster data key (one row).
CREATE TABLE IF NOT EXISTS pki (
    id            INTEGER PRIMARY KEY CHECK (id = 1),
    ca_cert       TEXT NOT NULL,
    ca_key_sealed TEXT NOT NULL,
    created_at    REAL NOT NULL,
    version       INTEGER NOT NULL
);
-- Every node certificate issued and not yet expired, so a removed node's are refused (revoked).
CREATE TABLE IF NOT EXISTS certs (
    fingerprint   TEXT PRIMARY KEY,
    node          TEXT NOT NULL,
    role          TEXT NOT NULL,
    expires_at    REAL NOT NULL,
    created_at    REAL NOT NULL,
    version       INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS certs_by_node ON certs (node);
-- Named volumes on each node (docs/volumes.md), as its worker last reported them (node.volumes): a
-- row per (node, name, driver), kept while the worker reports it. `remove_at` is set by volume.remove
-- (when it was asked) until the worker's list no longer has the volume.
CREATE TABLE IF NOT EXISTS volumes (
    node          TEXT NOT NULL,
    name          TEXT NOT NULL,
    driver        TEXT NOT NULL,
    remove_at     REAL,
    created_at    REAL NOT NULL,
    version       INTEGER NOT NULL,
    PRIMARY KEY (node, name, driver)
);
CREATE INDEX IF NOT EXISTS volumes_by_name ON volumes (name);
-- Secrets (warren secret create): the value sealed with the cluster data key for aad "secret:<id>"
-- (base64), never in the clear. Immutable: a new value is a new secret.
CREATE TABLE IF NOT EXISTS secrets (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL UNIQUE,
    data_sealed   TEXT NOT NULL,
    created_at    REAL NOT NULL,
    updated_at    REAL NOT NULL,
    version       INTEGER NOT NULL
);
-- Configs (warren config create): a file's bytes stored as they are (base64, so every manager's
-- text is the same), with their size and SHA-256 (hex). Immutable: new content is a new config.
CREATE TABLE IF NOT EXISTS configs (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL UNIQUE,
    data          TEXT NOT NULL,
    size          INTEGER NOT NULL,
    digest        TEXT NOT NULL,
    created_at    REAL NOT NULL,
    updated_at    REAL NOT NULL,
    version       INTEGER NOT NULL
);
"""


def create(conn: sqlite3.Connection) -> None:
    """Create every table (idempotent) and record the schema version."""
    conn.executescript(DDL)
    conn.execute(
        "INSERT INTO meta (key, value) VALUES ('schema_version', ?) "
        "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (str(SCHEMA_VERSION),),
    )
    conn.execute(
        "INSERT OR IGNORE INTO schema_migrations (version, how, description) VALUES (?, 'created', ?)",
        (SCHEMA_VERSION, f"created at schema version {SCHEMA_VERSION}"),
    )


def upgrade(conn: sqlite3.Connection) -> list[Migration]:
    """Bring a state file of an older READABLE_VERSIONS up to SCHEMA_VERSION, every record kept, in one
    transaction; returns the steps applied (none for a current file). `conn` in autocommit mode.
    CorruptStateError for a file of no readable version."""
    found = schema_version(conn)
    if found is None:
        raise CorruptStateError("not a Warren state file (no schema version)")
    return sqlitefile.upgrade(conn, found, MIGRATIONS, SCHEMA_VERSION, _record)


def _record(conn: sqlite3.Connection, step: Migration) -> None:
    conn.execute(
        "INSERT OR REPLACE INTO schema_migrations (version, how, description) VALUES (?, 'migrated', ?)",
        (step.source + 1, step.description),
    )
    conn.execute(
        "INSERT INTO meta (key, value) VALUES ('schema_version', ?) "
        "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (str(step.source + 1),),
    )


def content_digest(conn: sqlite3.Connection) -> str:
    """SHA-256 over every row of every replicated table, in a fixed order.

    SQLite keeps no page checksums, so a snapshot or backup carries this digest in its meta table and
    is refused at restore if its rows no longer match it (a flipped byte in a row is otherwise silent).
    """
    digest = hashlib.sha256()
    # A backup from an older version lacks the newer tables; its digest covered the ones it has.
    present = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    for table in (t for t in TABLES if t in present):
        digest.update(table.encode())
        for row in conn.execute(f"SELECT * FROM {table} ORDER BY rowid"):  # table names are ours
            digest.update(orjson.dumps(tuple(row)))
    return digest.hexdigest()


def schema_version(conn: sqlite3.Connection) -> int | None:
    """The schema version recorded in a database, or None if it has none (not a Warren state file)."""
    try:
        row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    except sqlite3.DatabaseError:
        return None
    return int(row[0]) if row is not None and str(row[0]).isdigit() else None


def json_text(value: object) -> str:
    """The text a JSON column holds (orjson: compact, the same bytes on every manager)."""
    return orjson.dumps(value).decode()
