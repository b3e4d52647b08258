"""Sending task status updates to the managers: queued in worker.db (merged per task), POSTed as soon
as they are made, deleted once a manager answered 200, resent in order after any failure (also
after a restart of the worker: the queue is on disk)."""

from __future__ import annotations

import asyncio
import logging

from warren.config import WorkerSettings
from warren.errors import UnavailableError, WarrenError
from warren.worker.backoff import Backoff
from warren.worker.cache import LocalTask, StatusUpdate, WorkerCache
from warren.worker.client import NodeRemovedError, WorkerClient

log = logging.getLogger(__name__)

# Status updates per POST; the leader accepts up to 5000 (api.models.MAX_STATUS_UPDATES).
STATUS_BATCH = 1000


class StatusReporter:
    def __init__(self, client: WorkerClient, cache: WorkerCache, settings: WorkerSettings) -> None:
        self.client = client
        self.cache = cache
        self.settings = settings
        self._wanted = asyncio.Event()
        self._wanted.set()  # first, whatever a previous run left queued

    def report(self, update: StatusUpdate, local: LocalTask | None = None) -> None:
        """Queue `update` durably (with the task's local view `local` in the same transaction, if given)
        and have it sent now."""
        if local is None:
            self.cache.enqueue(update)
        else:
            self.cache.put_local(local, update)
        self._wanted.set()

    def wake(self) -> None:
        """Try again now (a manager answers again)."""
        self._wanted.set()

    async def run(self) -> None:
        """Send whatever is queued whenever something is; NodeRemovedError ends it."""
        backoff = Backoff(self.settings.retry_initial_delay_s, self.settings.retry_max_delay_s)
        while True:
            await self._wanted.wait()
            self._wanted.clear()
            while batch := self.cache.pending(STATUS_BATCH):
                seen = self.client.successes
                try:
                    await self.client.status([u.to_doc() for _, u in batch])
                except UnavailableError:
                    # Wait for the backoff, or less if the session loop reaches a manager first.
                    await self.client.wait_success(seen, backoff.delay())
                    continue
                except NodeRemovedError:
                    raise
                except WarrenError as exc:  # refused (400): resending the same cannot help
                    if len(batch) > 1:
                        batch = await self._one_by_one(batch)
                    else:
                        log.warning("a manager refused the status update of task %s (%s); it is dropped",
                                    batch[0][1].task_id, exc)
                backoff.reset()
                self.cache.ack(batch)

    async def _one_by_one(self, batch: list[tuple[int, StatusUpdate]]) -> list[tuple[int, StatusUpdate]]:
        """A refused batch sent again update by update, so one bad update does not sink the others;
        the ones that are done with (accepted or refused)."""
        done = []
        for item in batch:
            try:
                await self.client.status([item[1].to_doc()])
            except UnavailableError:
                break  # the rest stays queued
            except NodeRemovedError:
                raise
            except WarrenError as exc:
                log.warning("a manager refused the status update of task %s (%s); it is dropped",
                            item[1].task_id, exc)
            done.append(item)
        return done
