"""Named volumes for the API: where each is (every node's inventory, as its worker reports it), which
services mount it, and removal (docs/volumes.md).

A removal is a request the node's worker carries out on its next session call (it removes a volume no
running task mounts, then reports its new list, which ends the request): refused while a service's
spec mounts the name, and kept while the node is down.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from warren.errors import InvalidError, NotFoundError
from warren.manager.consensus import Consensus
from warren.store import commands as c
from warren.store import volumes

log = logging.getLogger(__name__)


class Volumes:
    def __init__(self, consensus: Consensus) -> None:
        self.consensus = consensus

    def all(self) -> list[dict[str, Any]]:
        """Every node's volumes, by name then node."""
        return volumes.listing(self.consensus.store.conn)

    def get(self, name: str) -> dict[str, Any]:
        """Volume `name`: the services that mount it and the nodes that hold it; NotFoundError if no
        node has one of that name."""
        rows = volumes.listing(self.consensus.store.conn, name)
        if not rows:
            raise NotFoundError(f"no node has a volume named {name!r}")
        return {
            "name": name,
            "services": rows[0]["services"],
            "nodes": [{k: v for k, v in row.items() if k not in ("name", "services")} for row in rows],
        }

    async def remove(self, name: str, node: str | None) -> dict[str, Any]:
        """Ask `node`'s worker to remove its volume `name` (`node` may be left out when exactly one node
        has one): the request as recorded, with the node's state."""
        rows = volumes.listing(self.consensus.store.conn, name)
        if not rows:
            raise NotFoundError(f"no node has a volume named {name!r}")
        holders = sorted({str(r["node"]) for r in rows})
        if node is None:
            if len(holders) > 1:
                raise InvalidError(
                    f"volume {name!r} is on nodes {', '.join(holders)}: say which one's to remove "
                    f"(warren volume rm {name} --node NODE)"
                )
            node = holders[0]
        elif node not in holders:
            raise NotFoundError(f"node {node} has no volume named {name!r} (it is on {', '.join(holders)})")
        result = dict(await self.consensus.propose(c.RemoveVolume(node, name, time.time())))
        state = next(r["node_state"] for r in rows if r["node"] == node)
        log.info("removal of volume %s on node %s requested (node %s)", name, node, state)
        return {**result, "node_state": state}
