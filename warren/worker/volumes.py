"""The worker's Warren volumes (docs/volumes.md): the inventory it reports to the managers on its
session, and the removals they ask for (docs/worker-protocol.md, "Volumes").

The inventory is each runtime's `volumes()` (Docker volumes labelled with this node, the process
runtime's volume directories) as `{"name", "driver"}` entries sorted by (name, driver), at most
MAX_REPORTED. It is listed again only when something may have changed it (a task that mounts a volume
started, a removal ran) and reported when it differs from what the managers last took; on the first
call after a start, an empty inventory is not sent (absent then means none: a manager of an earlier
version, which refuses the key, still takes a worker that has no volume).

A removal asked for by a manager is done in the background, volume by volume; a volume that a task of
this worker mounts (one the managers still assign here, or that has a container) is kept, and so is one
the runtime refuses to remove (logged; the managers ask again).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable, Iterable, Mapping
from typing import TypeGuard

from warren.config import WorkerSettings
from warren.formats import NAME_PATTERN
from warren.runtime.base import ContainerRuntime, RuntimeUnavailableError, VolumeBusyError
from warren.spec.mounts import inventory_digest

log = logging.getLogger(__name__)

# At most this many volumes are reported (the API's models.MAX_NODE_VOLUMES), and asked to be removed
# in one answer.
MAX_REPORTED = 1024

Inventory = list[dict[str, str]]


def _valid(name: object) -> TypeGuard[str]:
    """Whether `name` is a volume name (warren.spec.mounts.VolumeName): what the managers take. A
    directory or labelled Docker volume made by hand with another name is not reported."""
    return isinstance(name, str) and len(name) <= 63 and re.fullmatch(NAME_PATTERN, name) is not None


class VolumeKeeper:
    """This worker's volumes across its `runtimes`; `in_use()` names those its tasks mount."""

    def __init__(
        self,
        runtimes: Mapping[str, ContainerRuntime],
        in_use: Callable[[], set[str]],
        *,
        list_timeout_s: float | None = None,
    ) -> None:
        self._runtimes = runtimes
        self._in_use = in_use
        self._list_timeout_s = (
            list_timeout_s if list_timeout_s is not None else WorkerSettings().volume_list_timeout_s
        )
        self._listed: Inventory | None = None
        self._stale = True
        # What the managers last took (None: nothing yet since this worker started).
        self._sent: Inventory | None = None
        self._resend = False  # the leader holds another list than _sent: report it again
        self._to_remove: dict[str, None] = {}  # in the order asked
        self._removing: asyncio.Task[None] | None = None

    def changed(self) -> None:
        """The inventory may have changed: list it again before the next report."""
        self._stale = True

    async def inventory(self) -> Inventory | None:
        """The volumes now (listed again if stale); the earlier listing (None if none) if a runtime could
        not list them within the list timeout."""
        if self._stale or self._listed is None:
            self._stale = False
            entries: set[tuple[str, str]] = set()
            for driver, runtime in self._runtimes.items():
                try:
                    async with asyncio.timeout(self._list_timeout_s):
                        names = await runtime.volumes()
                except (RuntimeUnavailableError, OSError, TimeoutError) as exc:
                    log.warning("cannot list the %s runtime's volumes: %s", driver, exc)
                    self._stale = True
                    return self._listed
                entries.update((name, driver) for name in names if _valid(name))
            if len(entries) > MAX_REPORTED:
                log.warning("this worker has %d volumes; only the first %d are reported", len(entries),
                            MAX_REPORTED)
            self._listed = [{"name": n, "driver": d} for n, d in sorted(entries)[:MAX_REPORTED]]
        return self._listed

    async def report(self) -> Inventory | None:
        """The inventory to send with the next session call, or None if the managers have it already."""
        listed = await self.inventory()
        if listed is None:
            return None
        if listed == (self._sent if self._sent is not None else []) and not self._resend:
            return None
        self._resend = False
        return listed

    def sent(self, inventory: Inventory) -> None:
        """A session call carrying `inventory` succeeded (or, with [], the first call without one)."""
        self._sent = inventory

    def stored(self, digest: object) -> None:
        """The leader's digest of the list it holds for this node (a session answer's `volumes_digest`):
        if it is not that of the list it last took (a write lost in a leader change), report again."""
        if isinstance(digest, str) and self._sent is not None:
            mine = inventory_digest((entry["name"], entry["driver"]) for entry in self._sent)
            self._resend = self._resend or digest != mine

    def remove(self, names: Iterable[object]) -> None:
        """A manager asks that these volumes of this worker be removed (each checked: a volume name)."""
        for name in list(names)[:MAX_REPORTED]:
            if not _valid(name):
                log.warning("a manager asked to remove a volume with an invalid name; ignored")
                continue
            self._to_remove[name] = None
        if self._to_remove and self._removing is None:
            self._removing = asyncio.create_task(self._remove_all(), name="volume-removal")

    async def _remove_all(self) -> None:
        try:
            while self._to_remove:
                name = next(iter(self._to_remove))
                del self._to_remove[name]
                await self._remove_one(name)
                self._stale = True
        finally:
            self._removing = None

    async def _remove_one(self, name: str) -> None:
        if name in self._in_use():
            log.info("volume %s is not removed: a task of this worker mounts it", name)
            return
        for driver, runtime in self._runtimes.items():
            try:
                await runtime.remove_volume(name)
            except (VolumeBusyError, RuntimeUnavailableError, OSError) as exc:
                log.warning("cannot remove volume %s (%s runtime): %s", name, driver, exc)
            else:
                log.info("volume %s removed (%s runtime, if it had it)", name, driver)

    async def close(self) -> None:
        """Stop a removal under way (the managers ask again)."""
        task = self._removing
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
