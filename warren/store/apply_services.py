"""What the service and secret commands do to the state (see apply.py: deterministic, a handler
returns the result or raises CommandError)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any

import msgspec
import orjson

from warren.errors import InvalidError
from warren.spec.publishing import ingress_conflict
from warren.spec.service import TASK_FIELDS, Publish, ServiceSpec, decode, spec_digest, to_doc
from warren.store import commands as c
from warren.store import queries
from warren.store.apply_configs import check_configs
from warren.store.commands import CommandError
from warren.store.schema import json_text


def _create_service(conn: sqlite3.Connection, index: int, cmd: c.CreateService) -> Any:
    if conn.execute("SELECT 1 FROM services WHERE name = ?", (cmd.name,)).fetchone() is not None:
        raise CommandError("conflict", f"a service named {cmd.name!r} already exists")
    _check_secrets(conn, cmd.name, cmd.spec.secrets, "not_found", "names")
    check_configs(conn, cmd.name, cmd.spec.config_list, "not_found", "names")
    _check_ports(conn, cmd.name, cmd.spec)
    conn.execute(
        "INSERT INTO services (id, name, spec, created_at, updated_at, version) VALUES (?, ?, ?, ?, ?, ?)",
        (cmd.service_id, cmd.name, json_text(to_doc(cmd.spec)), cmd.at, cmd.at, index),
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
    if "configs" in cmd.changes:
        check_configs(conn, cmd.name, spec.config_list, "not_found", "names")
    old = queries.stored_spec(row["spec"])
    if old is None or (old.publish, old.driver) != (spec.publish, spec.driver):
        _check_ports(conn, cmd.name, spec)
    # Only a change of what tasks are made of is an update worth rolling back to before; a scale (or a
    # label) keeps the previous spec, so `rollback` after a scale undoes the last real update.
    real = old is None or old.task_spec() != spec.task_spec()
    previous = row["spec"] if real else row["previous_spec"]
    conn.execute(
        "UPDATE services SET spec = ?, previous_spec = ?, updated_at = ?, version = ? WHERE name = ?",
        (json_text(doc), previous, cmd.at, index, cmd.name),
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
    check_configs(conn, cmd.name, spec.config_list, "conflict", what)
    _check_ports(conn, cmd.name, spec)
    conn.execute(
        "UPDATE services SET spec = ?, previous_spec = ?, updated_at = ?, version = ? WHERE name = ?",
        (json_text(doc), row["spec"], cmd.at, index, cmd.name),
    )
    if cmd.requested:
        status = {
            "state": "rollback_started",
            "message": "rollback requested",
            "started_at": cmd.at,
            "spec_digest": spec_digest(spec),
        }
        conn.execute("UPDATE services SET update_status = ? WHERE name = ?", (json_text(status), cmd.name))
    return queries.service(conn, cmd.name)


def _set_update_status(conn: sqlite3.Connection, index: int, cmd: c.SetUpdateStatus) -> Any:
    # Not a change of the service the user made: `version` stays, so a user's If-Match does not fail
    # because the reconciler reported progress meanwhile.
    status = None if cmd.status is None else json_text(cmd.status)
    cur = conn.execute("UPDATE services SET update_status = ? WHERE name = ?", (status, cmd.name))
    if cur.rowcount == 0:
        raise CommandError("not_found", f"no service named {cmd.name!r}")
    return {"name": cmd.name, "update_status": cmd.status}


def _remove_service(conn: sqlite3.Connection, index: int, cmd: c.RemoveService) -> Any:
    row = _service_version(conn, cmd.name, cmd.if_version)
    conn.execute("DELETE FROM tasks WHERE service_id = ?", (row["id"],))
    conn.execute("DELETE FROM services WHERE id = ?", (row["id"],))
    return {"removed": cmd.name}


class _Ports(msgspec.Struct, frozen=True):
    """What the port rule reads of a stored spec (the rest is left undecoded)."""

    driver: str = "docker"
    publish: list[Publish] = msgspec.field(default_factory=list)


def _check_ports(conn: sqlite3.Connection, name: str, spec: ServiceSpec) -> None:
    """Refuse (conflict) a spec whose published ports break the cluster-wide rule of ingress ports
    (warren.spec.publishing.ingress_conflict) beside every other service. Checked here, in the
    replicated state machine, so two requests racing cannot both take one port. A stored spec that no
    longer decodes is left out (it publishes nothing the reconciler acts on)."""
    if not spec.publish:
        return
    others = []
    for other, text in conn.execute("SELECT name, spec FROM services WHERE name != ? ORDER BY name", (name,)):
        try:
            ports = msgspec.json.decode(text, type=_Ports)
        except msgspec.DecodeError:
            continue
        if ports.publish:
            others.append((str(other), ports.driver, ports.publish))
    why = ingress_conflict(name, spec.driver, spec.publish, others)
    if why is not None:
        raise CommandError("conflict", why)


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
        fix = f"take it out of their specs first (warren service update SERVICE --secret-rm {cmd.name})"
        raise c.in_use(f"secret {cmd.name!r}", users, fix)
    conn.execute("DELETE FROM secrets WHERE name = ?", (cmd.name,))
    return {"removed": cmd.name}


HANDLERS: dict[type[Any], Callable[[sqlite3.Connection, int, Any], Any]] = {
    c.CreateService: _create_service,
    c.UpdateService: _update_service,
    c.RollbackService: _rollback_service,
    c.SetUpdateStatus: _set_update_status,
    c.RemoveService: _remove_service,
    c.CreateSecret: _create_secret,
    c.RemoveSecret: _remove_secret,
}
