"""Configs on the manager side: the check that named configs exist, and what the leader sends a worker
(the API's create, list, inspect and remove are warren.manager.control.configs).

A config is stored as it is (not sealed: docs/configs.md). The leader sends a worker, with its
assignments, the content of the configs named by its tasks that should run, and of no other
(docs/worker-protocol.md).
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterable, Mapping
from typing import Any

from warren.errors import NotFoundError
from warren.store import queries

log = logging.getLogger(__name__)


def check_known(conn: sqlite3.Connection, names: Iterable[str]) -> None:
    """NotFoundError naming every config of `names` that does not exist (apply checks the same again,
    against a config removed meanwhile)."""
    wanted = list(dict.fromkeys(names))
    known = queries.existing_configs(conn, wanted)
    missing = [n for n in wanted if n not in known]
    if missing:
        listed = ", ".join(repr(n) for n in missing)
        raise NotFoundError(f"no config named {listed} (create it first: warren config create NAME FILE)")


def names_in(refs: object) -> list[str]:
    """The config names of a spec's `configs` as JSON carries it (anything else is skipped)."""
    if not isinstance(refs, list):
        return []
    return [r["name"] for r in refs if isinstance(r, Mapping) and isinstance(r.get("name"), str)]


def names_used(docs: Iterable[Mapping[str, Any]]) -> set[str]:
    """The configs named by the tasks of assignment documents that should run (a task being stopped
    needs none)."""
    names: set[str] = set()
    for doc in docs:
        if doc.get("desired_state") != "running":
            continue
        names.update(names_in((doc.get("spec") or {}).get("configs")))
    return names


def for_delivery(conn: sqlite3.Connection, names: Iterable[str], *, node: str) -> dict[str, str]:
    """name -> content (base64) of each of `names` that exists, for worker `node`'s session answer. One
    that is missing is left out (and logged): the worker fails the task that needs it, saying so."""
    wanted = set(names)
    found = queries.config_data(conn, wanted)
    for name in sorted(wanted - found.keys()):
        log.warning("a task on %s needs config %s, which does not exist (removed, or lost in a restore)",
                    node, name)
    return found
