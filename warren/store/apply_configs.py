"""What the config commands do to the state, and the check that a service's spec names only configs
that exist (see apply.py: deterministic, a handler returns the result or raises CommandError)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any

from warren.spec.mounts import ConfigRef
from warren.store import commands as c
from warren.store import queries
from warren.store.commands import CommandError


def check_configs(
    conn: sqlite3.Connection, service: str, refs: list[ConfigRef], code: str, what: str
) -> None:
    """Refuse a service spec naming configs that do not exist. The API checks the same first; here it
    holds against a config removed meanwhile."""
    names = [ref.name for ref in refs]
    known = queries.existing_configs(conn, names)
    missing = [n for n in dict.fromkeys(names) if n not in known]
    if missing:
        raise CommandError(
            code,
            f"service {service!r}: {what} configs that do not exist: {', '.join(missing)} "
            "(create them first: warren config create NAME FILE)",
        )


def _create_config(conn: sqlite3.Connection, index: int, cmd: c.CreateConfig) -> Any:
    if queries.existing_configs(conn, [cmd.name]):
        raise CommandError(
            "conflict",
            f"a config named {cmd.name!r} already exists (configs are immutable: give the new content a "
            "new name and switch the services to it, or remove this one first)",
        )
    conn.execute(
        "INSERT INTO configs (id, name, data, size, digest, created_at, updated_at, version)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (cmd.config_id, cmd.name, cmd.data, cmd.size, cmd.digest, cmd.at, cmd.at, index),
    )
    found = queries.config(conn, cmd.name) or {}
    found.pop("data", None)  # the proposer has it; the answer (and the Raft response) stays small
    return found


def _remove_config(conn: sqlite3.Connection, index: int, cmd: c.RemoveConfig) -> Any:
    if not queries.existing_configs(conn, [cmd.name]):
        raise CommandError("not_found", f"no config named {cmd.name!r}")
    users = queries.config_users(conn, cmd.name)
    if users:
        fix = f"take it out of their specs first (warren service update SERVICE --config-rm {cmd.name})"
        raise c.in_use(f"config {cmd.name!r}", users, fix)
    conn.execute("DELETE FROM configs WHERE name = ?", (cmd.name,))
    return {"removed": cmd.name}


HANDLERS: dict[type[Any], Callable[[sqlite3.Connection, int, Any], Any]] = {
    c.CreateConfig: _create_config,
    c.RemoveConfig: _remove_config,
}
