"""Secrets on the manager side: what they are sealed to, the check that named secrets exist, and their
opening for delivery (the API's create, list, inspect and remove are warren.manager.control.secrets).

A value is sealed (warren.pki.sealing, AES-256-GCM under the cluster data key) by the manager that
takes the request, before anything is proposed: only ciphertext enters the Raft log, snapshots,
backups and warren.db. The aad is `secret:<secret id>`, so a sealed blob copied into another row
does not open. The leader opens a secret only to hand it to a worker that runs a task using it, in
that worker's session answer (docs/worker-protocol.md).

No value is ever logged, returned by the API or put in an error message: errors name the secret.
"""

from __future__ import annotations

import base64
import binascii
import logging
import sqlite3
from collections.abc import Iterable, Mapping
from typing import Any

from warren.errors import CorruptStateError, NotFoundError
from warren.pki import sealing
from warren.store import queries

log = logging.getLogger(__name__)


def aad(secret_id: str) -> str:
    """What a secret's sealed value is bound to."""
    return f"secret:{secret_id}"


def check_known(conn: sqlite3.Connection, names: Iterable[str]) -> None:
    """NotFoundError naming every secret of `names` that does not exist (apply checks the same again,
    against a secret removed meanwhile)."""
    wanted = list(dict.fromkeys(names))
    known = queries.existing_secrets(conn, wanted)
    missing = [n for n in wanted if n not in known]
    if missing:
        listed = ", ".join(repr(n) for n in missing)
        raise NotFoundError(f"no secret named {listed} (create it first: warren secret create NAME FILE)")


# -- delivery (the leader's dispatcher) -----------------------------------------------------------


def names_used(docs: Iterable[Mapping[str, Any]]) -> set[str]:
    """The secrets named by the tasks of assignment documents that should run (a task being stopped
    needs none)."""
    names: set[str] = set()
    for doc in docs:
        if doc.get("desired_state") != "running":
            continue
        spec = doc.get("spec") or {}
        for name in spec.get("secrets") or ():
            if isinstance(name, str):
                names.add(name)
    return names


def open_for_delivery(
    conn: sqlite3.Connection, data_key: bytes, names: Iterable[str], *, node: str
) -> dict[str, str]:
    """name -> value (base64) of each of `names` that exists and opens, for worker `node`'s session
    answer. One that is missing or does not open is left out (and logged, by name): the worker fails
    the task that needs it with a message saying so."""
    wanted = set(names)
    sealed = queries.sealed_secrets(conn, wanted)
    values: dict[str, str] = {}
    for name, (secret_id, blob) in sealed.items():
        try:
            plain = sealing.unseal(data_key, base64.b64decode(blob), aad(secret_id))
        except (CorruptStateError, binascii.Error, ValueError) as exc:
            log.error("secret %s cannot be delivered to %s: %s", name, node, exc)
            continue
        values[name] = base64.b64encode(plain).decode("ascii")
    for name in sorted(wanted - sealed.keys()):
        log.warning("a task on %s needs secret %s, which does not exist (removed, or lost in a restore)",
                    node, name)
    return values
