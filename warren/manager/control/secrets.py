"""Secrets for the API: create, list, inspect, remove (docs/secrets.md).

A value is sealed (warren.pki.sealing, under the cluster data key, bound to `secret:<id>`) here, by the
manager that takes the request, before anything is proposed: only ciphertext enters the Raft log. No
value is ever logged, returned or put in an error message: errors name the secret.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

from warren.errors import InvalidError, NotFoundError
from warren.manager.secrets import aad
from warren.pki import sealing
from warren.store import commands as c
from warren.store import queries
from warren.store.machine import Store

log = logging.getLogger(__name__)

Propose = Callable[[c.Command], Awaitable[Any]]


def decode_value(data: str) -> bytes:
    """The bytes of a base64 value (standard alphabet, padding required); InvalidError otherwise.
    The message never quotes the input: it is a secret."""
    try:
        return base64.b64decode(data.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise InvalidError("data must be the secret's value in base64 (standard alphabet, padded)") from None


class Secrets:
    """Create and remove secrets through Raft (`propose`), sealing values with `data_key`."""

    def __init__(self, store: Store, propose: Propose, data_key: bytes, max_bytes: int) -> None:
        self.store = store
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
        return queries.secrets(self.store.conn)

    def get(self, name: str) -> dict[str, Any]:
        found = queries.secret(self.store.conn, name)
        if found is None:
            raise NotFoundError(f"no secret named {name!r}")
        return found
