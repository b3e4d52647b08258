"""The worker that runs next to a manager in the same process (a "hybrid" manager; off with
--manager-only).

It is an ordinary worker (warren.worker's WorkerAgent) with its own data dir, `<manager data
dir>/worker`, talking to this manager's own API like any other worker: there is no shortcut around
the protocol, so it behaves exactly like a remote worker (held sessions, autonomy, failover to
whichever manager leads). The first start asks this manager for a worker join token and joins;
later starts resume from the worker's node.json.

It never delays the manager: it starts in the background once the manager serves, retries its join
until the cluster can answer, and is stopped first on shutdown, leaving its containers running (a
restarted manager's worker adopts them).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from typing import Any

from warren.api.peer import PeerClient
from warren.config import ManagerSettings, WorkerSettings
from warren.errors import WarrenError

log = logging.getLogger(__name__)

WORKER_DIR = "worker"


class LocalWorker:
    def __init__(
        self, settings: ManagerSettings, manager_data_dir: str, api_addr: str, peers: PeerClient
    ) -> None:
        self.settings = WorkerSettings(
            managers=(api_addr,),
            data_dir=os.path.join(manager_data_dir, WORKER_DIR),
            runtime=settings.local_worker_runtime,
        )
        self.api_addr = api_addr
        self.peers = peers
        self._retry_s = (self.settings.retry_initial_delay_s, self.settings.retry_max_delay_s)
        self._agent: Any = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="local-worker")

    async def stop(self) -> None:
        """Stop the agent (its containers keep running) and the task that runs it."""
        agent = self._agent
        if agent is not None:
            with contextlib.suppress(Exception):
                await agent.stop()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        from warren.worker import agent as agent_mod
        from warren.worker import identity

        data_dir = self.settings.resolved_data_dir
        token = None
        if identity.load(identity.prepare_data_dir(data_dir)) is None:
            token = await self._worker_token()
        self._agent = agent_mod.WorkerAgent(self.settings, token=token)
        try:
            await self._agent.run()
        except asyncio.CancelledError:
            raise
        except Exception:  # a task boundary: the manager keeps serving without its local worker
            log.exception("the local worker stopped")

    async def _worker_token(self) -> str:
        """A fresh worker join token from this manager's own API (a follower forwards the request)."""
        delay, max_delay = self._retry_s
        while True:
            try:
                doc, _ = await self.peers.call(
                    self.api_addr, "POST", "/v1/cluster/join-tokens", {"role": "worker"}
                )
                return str(doc["token"])
            except (WarrenError, KeyError) as exc:
                log.info("local worker: no join token yet (%s); retrying", exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, max_delay)
