"""Reads of the replicated state, as plain JSON-able dicts (what the API returns).

A node's `secret_hash` (the digest of a worker's session secret) appears in no result but
`node_secret_hash`'s: everything else here may end up in an API answer or a log line.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterable, Mapping
from typing import Any

import orjson

from warren.errors import InvalidError
from warren.spec import taskstate
from warren.spec.service import ServiceSpec, decode, spec_digest, to_doc

NODE_COLUMNS = (
    "name, role, state, availability, raft_id, api_addr, raft_addr, labels, resources, created_at,"
    " updated_at, version, operator_labels"
)


def cluster(conn: sqlite3.Connection) -> dict[str, Any] | None:
    row = conn.execute("SELECT id, created_at, version FROM cluster").fetchone()
    return (
        None
        if row is None
        else {"cluster_id": row["id"], "created_at": row["created_at"], "version": row["version"]}
    )


def has_table(conn: sqlite3.Connection, name: str) -> bool:
    """Whether a state file has this table (a backup from an older version may not)."""
    row = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)).fetchone()
    return row is not None


def cluster_ca(conn: sqlite3.Connection) -> tuple[str, str] | None:
    """(CA certificate PEM, sealed CA key base64), or None before the founder recorded them."""
    row = conn.execute("SELECT ca_cert, ca_key_sealed FROM pki").fetchone()
    return None if row is None else (str(row["ca_cert"]), str(row["ca_key_sealed"]))


def revoked_fingerprints(conn: sqlite3.Connection, now: float) -> list[str]:
    """SHA-256s of unexpired node certificates whose node was removed (a node of that role and name
    no longer exists)."""
    rows = conn.execute(
        "SELECT fingerprint FROM certs c WHERE expires_at > ? AND role != 'admin' AND NOT EXISTS "
        "(SELECT 1 FROM nodes n WHERE n.name = c.node AND n.role = c.role) ORDER BY fingerprint",
        (now,),
    )
    return [str(r["fingerprint"]) for r in rows]


def node_role(conn: sqlite3.Connection, name: str) -> str | None:
    row = conn.execute("SELECT role FROM nodes WHERE name = ?", (name,)).fetchone()
    return None if row is None else str(row["role"])


# -- nodes ------------------------------------------------------------------------------------------


def _node(row: sqlite3.Row) -> dict[str, Any]:
    doc = dict(row)
    # `labels`: what placement matches constraints against, the labels a worker reported
    # (`reported_labels`) with those an operator set (`operator_labels`, node update) over them.
    reported, operator = orjson.loads(doc["labels"]), orjson.loads(doc["operator_labels"])
    doc["labels"] = {**reported, **operator}
    doc["reported_labels"] = reported
    doc["operator_labels"] = operator
    doc["resources"] = orjson.loads(doc["resources"])
    if doc["role"] == "worker":
        doc["addr"] = doc["api_addr"]
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


def node_secret_hash(conn: sqlite3.Connection, name: str) -> str | None:
    """The SHA-256 (hex) of a worker's session secret; None for an unknown node or one without."""
    row = conn.execute("SELECT secret_hash FROM nodes WHERE name = ?", (name,)).fetchone()
    return None if row is None else row["secret_hash"]


def count_nodes(conn: sqlite3.Connection, role: str) -> int:
    return int(conn.execute("SELECT count(*) FROM nodes WHERE role = ?", (role,)).fetchone()[0])


# -- services ---------------------------------------------------------------------------------------

_SERVICE_SELECT = f"""
SELECT s.id, s.name, s.spec, s.previous_spec IS NOT NULL AS has_previous, s.update_status, s.version,
       s.created_at, s.updated_at,
       (SELECT count(*) FROM tasks t WHERE t.service_id = s.id AND t.state = 'running'
            AND t.desired_state = 'running') AS replicas_running,
       (SELECT count(*) FROM tasks t WHERE t.service_id = s.id AND t.desired_state = 'running'
            AND t.state NOT IN {taskstate.TERMINAL_SQL}) AS live_tasks
FROM services s
"""


def stored_spec(text: str | bytes) -> ServiceSpec | None:
    """A stored spec, defaulted; None if it is not a valid one (written before a check it fails
    existed: the reconciler leaves its service alone, an update may mend it)."""
    try:
        return decode(ServiceSpec, text)
    except InvalidError:
        return None


def _service(row: sqlite3.Row) -> dict[str, Any]:
    spec = stored_spec(row["spec"])
    digest: str | None = None
    if spec is None:  # shown as stored; nothing is desired of a service the reconciler leaves alone
        doc, desired = orjson.loads(row["spec"]), 0
    else:
        doc, digest = to_doc(spec), spec_digest(spec)
        desired = int(row["live_tasks"]) if spec.mode == "global" else spec.replicas
    return {
        "id": row["id"],
        "name": row["name"],
        "spec": doc,
        "version": row["version"],
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
        "update_status": None if row["update_status"] is None else orjson.loads(row["update_status"]),
        "has_previous": bool(row["has_previous"]),
        "replicas_running": int(row["replicas_running"]),
        "replicas_desired": desired,
        # Tasks of another digest are outdated (a rolling update replaces them): the CLI waits on it.
        "spec_digest": digest,
    }


def services(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    return [_service(r) for r in conn.execute(_SERVICE_SELECT + " ORDER BY s.name")]


def service(conn: sqlite3.Connection, name: str) -> dict[str, Any] | None:
    row = conn.execute(_SERVICE_SELECT + " WHERE s.name = ?", (name,)).fetchone()
    return None if row is None else _service(row)


# -- tasks ------------------------------------------------------------------------------------------

_TASK_SELECT = """
SELECT t.id, t.service_id, coalesce(s.name, t.service_id) AS service_name, t.slot, t.node,
       t.desired_state, t.state, t.message, t.health, t.container_id, t.exit_code, t.spec_digest,
       t.created_at, t.updated_at, t.started_at, t.version
FROM tasks t LEFT JOIN services s ON s.id = t.service_id
"""


def _task(row: sqlite3.Row) -> dict[str, Any]:
    doc = dict(row)
    if doc["slot"] is not None:
        suffix = str(doc["slot"])
    else:  # global mode: one task per node (an unplaced one is known by its ID)
        suffix = doc["node"] if doc["node"] is not None else doc["id"]
    doc["name"] = f"{doc['service_name']}.{suffix}"
    return doc


def tasks(
    conn: sqlite3.Connection,
    *,
    service_id: str | None = None,
    node: str | None = None,
    include_final: bool = True,
) -> list[dict[str, Any]]:
    """Tasks by service, then slot (global: node), newest first within a slot."""
    where: list[str] = []
    args: list[str] = []
    if service_id is not None:
        where.append("t.service_id = ?")
        args.append(service_id)
    if node is not None:
        where.append("t.node = ?")
        args.append(node)
    if not include_final:
        where.append(f"t.state NOT IN {taskstate.TERMINAL_SQL}")
    sql = _TASK_SELECT + (" WHERE " + " AND ".join(where) if where else "")
    # Global tasks have no slot: theirs is their node.
    sql += " ORDER BY service_name, t.slot, CASE WHEN t.slot IS NULL THEN t.node END, t.created_at DESC, t.id"
    return [_task(r) for r in conn.execute(sql, args)]


def task(conn: sqlite3.Connection, task_id: str) -> dict[str, Any] | None:
    row = conn.execute(_TASK_SELECT + " WHERE t.id = ?", (task_id,)).fetchone()
    return None if row is None else _task(row)


def assignments(conn: sqlite3.Connection, node: str) -> list[dict[str, Any]]:
    """The TASK documents of docs/worker-protocol.md: every task on `node` that is not final."""
    rows = conn.execute(
        "SELECT t.id, t.service_id, coalesce(s.name, t.service_id) AS service_name, t.slot,"
        " t.desired_state, t.state, t.spec, t.spec_digest"
        " FROM tasks t LEFT JOIN services s ON s.id = t.service_id"
        f" WHERE t.node = ? AND t.state NOT IN {taskstate.TERMINAL_SQL} ORDER BY t.id",
        (node,),
    )
    return [
        {
            "task_id": r["id"],
            "service_id": r["service_id"],
            "service_name": r["service_name"],
            "slot": r["slot"],
            "desired_state": r["desired_state"],
            "state": r["state"],
            "spec": orjson.loads(r["spec"]),
            "spec_digest": r["spec_digest"],
        }
        for r in rows
    ]


def assignments_digest(docs: Iterable[Mapping[str, Any]]) -> str:
    """A short digest of what a worker must act on: which tasks, whether each should run, and what
    it runs. A task's own state is left out (the worker reported it; nothing for it to do)."""
    items = sorted((d["task_id"], d["desired_state"], d["spec_digest"]) for d in docs)
    return hashlib.sha256(orjson.dumps(items)).hexdigest()[:16]


# -- secrets ----------------------------------------------------------------------------------------
# What the API shows of a secret: never its sealed value (only `sealed_secrets` reads that, for the
# leader to open and deliver to a worker).

_SECRET_COLUMNS = "id, name, created_at, updated_at, version"
# (secret name, service name) for every secret a service's spec names.
_SECRET_USES = "SELECT j.value, s.name FROM services s, json_each(s.spec, '$.secrets') j"


def secrets(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    """Every secret (metadata only), by name, each with the services whose spec names it."""
    users: dict[str, list[str]] = {}
    for secret, service in conn.execute(_SECRET_USES + " ORDER BY s.name"):
        users.setdefault(str(secret), []).append(str(service))
    rows = conn.execute(f"SELECT {_SECRET_COLUMNS} FROM secrets ORDER BY name")
    return [{**dict(r), "services": users.get(r["name"], [])} for r in rows]


def secret(conn: sqlite3.Connection, name: str) -> dict[str, Any] | None:
    """One secret's metadata and the services whose spec names it; None if there is none."""
    row = conn.execute(f"SELECT {_SECRET_COLUMNS} FROM secrets WHERE name = ?", (name,)).fetchone()
    return None if row is None else {**dict(row), "services": secret_users(conn, name)}


def secret_users(conn: sqlite3.Connection, name: str) -> list[str]:
    """Names of the services whose spec names secret `name`."""
    rows = conn.execute(_SECRET_USES + " WHERE j.value = ? ORDER BY s.name", (name,))
    return list(dict.fromkeys(str(r[1]) for r in rows))


def existing_secrets(conn: sqlite3.Connection, names: Iterable[str]) -> set[str]:
    """Which of `names` are secrets."""
    return {n for n in set(names) if conn.execute("SELECT 1 FROM secrets WHERE name = ?", (n,)).fetchone()}


def sealed_secrets(conn: sqlite3.Connection, names: Iterable[str]) -> dict[str, tuple[str, str]]:
    """name -> (secret ID, sealed value in base64) of those of `names` that exist. For delivery to a
    worker only: the leader opens them with the data key; never for an answer or a log line."""
    found: dict[str, tuple[str, str]] = {}
    for name in sorted(set(names)):
        row = conn.execute("SELECT id, data_sealed FROM secrets WHERE name = ?", (name,)).fetchone()
        if row is not None:
            found[name] = (str(row["id"]), str(row["data_sealed"]))
    return found


# -- configs ----------------------------------------------------------------------------------------
# A config's content is no secret: `config` (one) returns it; listings carry its size and digest only.

_CONFIG_COLUMNS = "id, name, size, digest, created_at, updated_at, version"
# (config name, service name) for every config a service's spec names.
_CONFIG_USES = (
    "SELECT json_extract(j.value, '$.name'), s.name FROM services s, json_each(s.spec, '$.configs') j"
)


def configs(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    """Every config (without its content), by name, each with the services whose spec names it."""
    users: dict[str, list[str]] = {}
    for config, service in conn.execute(_CONFIG_USES + " ORDER BY s.name"):
        names = users.setdefault(str(config), [])
        if str(service) not in names:
            names.append(str(service))
    rows = conn.execute(f"SELECT {_CONFIG_COLUMNS} FROM configs ORDER BY name")
    return [{**dict(r), "services": users.get(r["name"], [])} for r in rows]


def config(conn: sqlite3.Connection, name: str) -> dict[str, Any] | None:
    """One config with its content (`data`, base64) and the services whose spec names it; None if
    there is none."""
    row = conn.execute(f"SELECT {_CONFIG_COLUMNS}, data FROM configs WHERE name = ?", (name,)).fetchone()
    return None if row is None else {**dict(row), "services": config_users(conn, name)}


def config_users(conn: sqlite3.Connection, name: str) -> list[str]:
    """Names of the services whose spec names config `name`."""
    rows = conn.execute(_CONFIG_USES + " WHERE json_extract(j.value, '$.name') = ? ORDER BY s.name", (name,))
    return list(dict.fromkeys(str(r[1]) for r in rows))


def existing_configs(conn: sqlite3.Connection, names: Iterable[str]) -> set[str]:
    """Which of `names` are configs."""
    return {n for n in set(names) if conn.execute("SELECT 1 FROM configs WHERE name = ?", (n,)).fetchone()}


def config_data(conn: sqlite3.Connection, names: Iterable[str]) -> dict[str, str]:
    """name -> content (base64) of those of `names` that exist."""
    found: dict[str, str] = {}
    for name in sorted(set(names)):
        row = conn.execute("SELECT data FROM configs WHERE name = ?", (name,)).fetchone()
        if row is not None:
            found[name] = str(row["data"])
    return found


# -- raw rows ---------------------------------------------------------------------------------------


def count_rows(conn: sqlite3.Connection, table: str) -> int:
    return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])  # table names are ours


def table_rows(conn: sqlite3.Connection, table: str) -> list[dict[str, Any]]:
    """Every row of a table as stored, secrets' digests included: for copying a backup into the
    replicated state (workers keep their sessions across a restore), never for an API answer."""
    return [dict(r) for r in conn.execute(f"SELECT * FROM {table}")]  # table names are ours
