"""Secrets on the manager side: create, list, inspect and remove them, and open them for delivery.

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
import os
import sqlite3
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from warren.errors import CorruptStateError, InvalidError, NotFoundError
from warren.pki import sealing
from warren.store import commands as c
from warren.store import queries

log = logging.getLogger(__name__)

Propose = Callable[[c.Command], Awaitable[Any]]


def aad(secret_id: str) -> str:
    """What a secret's sealed value is bound to."""
    return f"secret:{secret_id}"


def decode_value(data: str) -> bytes:
    """The bytes of a base64 value (standard alphabet, padding required); InvalidError otherwise.
    The message never quotes the input: it is a secret."""
    try:
        return base64.b64decode(data.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise InvalidError("data must be the secret's value in base64 (standard alphabet, padded)") from None


class Secrets:
    """Create and remove secrets through Raft (`propose`), sealing values with `data_key`."""

    def __init__(self, conn: sqlite3.Connection, propose: Propose, data_key: bytes, max_bytes: int) -> None:
        self.conn = conn
        self.propose = propose
        self.data_key = data_key
        self.max_bytes = max_bytes

    async def create(self, name: str, value: bytes) -> dict[str, Any]:
        if not value:
            raise InvalidError(f"secret {name!r} is empty: give a value of at least one byte")
        if len(value) > self.max_bytes:
            raise InvalidError(
                f"secret {name!r} is {len(value)} bytes; at most {self.max_bytes} "
                f"({self.max_bytes // 1024} KiB) are accepted"
            )
        secret_id = "sec-" + os.urandom(8).hex()
        sealed = sealing.seal(self.data_key, value, aad(secret_id))
        cmd = c.CreateSecret(secret_id, name, base64.b64encode(sealed).decode("ascii"), time.time())
        result = dict(await self.propose(cmd))
        log.info("secret %s created (%s)", name, secret_id)
        return result

    async def remove(self, name: str) -> dict[str, Any]:
        result = dict(await self.propose(c.RemoveSecret(name, time.time())))
        log.info("secret %s removed", name)
        return result

    def all(self) -> list[dict[str, Any]]:
        return queries.secrets(self.conn)

    def get(self, name: str) -> dict[str, Any]:
        found = queries.secret(self.conn, name)
        if found is None:
            raise NotFoundError(f"no secret named {name!r}")
        return found


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
