"""A one-node Raft in memory for the manager's tests: each proposed command is applied to a real store as
one log entry; an optional gate holds proposals back (to see what merges while one is in flight)."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

from warren.errors import error_class
from warren.store import commands as c
from warren.store.machine import Store


class Proposer:
    """Applies each proposed command to the store as one log entry, like a one-node Raft would.
    `proposed` holds what was proposed (awaited), `payloads` every entry applied (`apply` too)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.index = 0
        self.proposed: list[c.Command] = []
        self.payloads: list[bytes] = []
        self.gate: asyncio.Event | None = None
        self.in_flight = 0
        self.max_in_flight = 0

    async def __call__(self, cmd: c.Command) -> Any:
        self.proposed.append(cmd)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.gate is not None:
                await self.gate.wait()
            return self.apply(cmd)
        finally:
            self.in_flight -= 1

    def apply(self, cmd: c.Command) -> Any:
        """Apply `cmd` at once (set-up); its answer, or the error it was refused with."""
        self.index += 1
        payload = c.encode(cmd)
        self.payloads.append(payload)
        (answer,) = self.store.apply([(self.index, 1, payload)])
        doc = orjson.loads(answer)
        if "error" in doc:
            raise error_class(doc["error"])(doc["message"])
        return doc["ok"]

    def of(self, cls: type[Any]) -> list[Any]:
        return [p for p in self.proposed if isinstance(p, cls)]
