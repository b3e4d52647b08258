"""Configs for the API: create, list, inspect, remove (docs/configs.md).

A config is a named file stored as it is (not sealed; `inspect` shows it), immutable: new content is a
new name. Its size is bounded by ManagerSettings.max_config_bytes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

from warren.errors import InvalidError, NotFoundError
from warren.store import commands as c
from warren.store import queries
from warren.store.machine import Store

log = logging.getLogger(__name__)

Propose = Callable[[c.Command], Awaitable[Any]]


def decode_content(data: str) -> bytes:
    """The bytes of a base64 content (standard alphabet, padding required); InvalidError otherwise."""
    try:
        return base64.b64decode(data.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise InvalidError(
            "data must be the config's content in base64 (standard alphabet, padded)"
        ) from None


class Configs:
    """Create and remove configs through Raft (`propose`); at most `max_bytes` each."""

    def __init__(self, store: Store, propose: Propose, max_bytes: int) -> None:
        self.store = store
        self.propose = propose
        self.max_bytes = max_bytes

    async def create(self, name: str, content: bytes) -> dict[str, Any]:
        if not content:
            raise InvalidError(f"config {name!r} is empty: give a content of at least one byte")
        if len(content) > self.max_bytes:
            raise InvalidError(
                f"config {name!r} is {len(content)} bytes; at most {self.max_bytes} "
                f"({self.max_bytes // 1024} KiB) are accepted"
            )
        config_id = "cfg-" + os.urandom(8).hex()
        cmd = c.CreateConfig(
            config_id,
            name,
            base64.b64encode(content).decode("ascii"),
            len(content),
            hashlib.sha256(content).hexdigest(),
            time.time(),
        )
        result = dict(await self.propose(cmd))
        log.info("config %s created (%s, %d bytes)", name, config_id, len(content))
        return result

    async def remove(self, name: str) -> dict[str, Any]:
        result = dict(await self.propose(c.RemoveConfig(name, time.time())))
        log.info("config %s removed", name)
        return result

    def all(self) -> list[dict[str, Any]]:
        return queries.configs(self.store.conn)

    def get(self, name: str) -> dict[str, Any]:
        found = queries.config(self.store.conn, name)
        if found is None:
            raise NotFoundError(f"no config named {name!r}")
        return found
