"""The worker that runs next to a manager in the same process (a "hybrid" manager; off with
--manager-only).

It is an ordinary worker (warren.worker's WorkerAgent) with its own data dir, `<manager data
dir>/worker`, talking to this manager's own API like any other worker: there is no shortcut around
the protocol, so it behaves exactly like a remote worker (held sessions, autonomy, failover to
whichever manager leads). The first start asks this manager for a worker join token and joins
(checking the manager's CA against the token and getting its own worker certificate, as any worker
does); later starts resume from the worker's node.json and TLS material, and renew the certificate
like any worker.

Its runtime is `--runtime` of `cluster init`/`manager join` (ManagerSettings.local_worker_runtime), and
what it allows `--allow-device`, `--allow-bind` and `--allow-privileged`, as for `worker start`:
`auto` is Docker, and without an engine it runs nothing until one answers; the process runtime only
when asked (`make run` asks for it on a host without Docker).

It never delays the manager: it starts in the background once the manager serves, retries its join
until the cluster can answer, and is stopped first on shutdown, leaving its containers running (a
restarted manager's worker adopts them).
"""

from __future__ import annotations

import asyncio
import logging
import os

from warren.config import ManagerSettings, WorkerSettings
from warren.durable import private_data_dir
from warren.errors import ConfigError, CorruptStateError, UnauthorizedError, WarrenError
from warren.manager.peer import PeerClient
from warren.worker import identity
from warren.worker.daemon import WorkerAgent

log = logging.getLogger(__name__)

# Not "worker": that is where a standalone `warren worker start` keeps its state by default
# (default_data_dir() + "/worker"), and a machine may run both with default data dirs.
WORKER_DIR = "local-worker"


class LocalWorker:
    def __init__(
        self, settings: ManagerSettings, manager_data_dir: str, api_addr: str, peers: PeerClient
    ) -> None:
        self.settings = WorkerSettings(
            managers=(api_addr,),
            data_dir=os.path.join(manager_data_dir, WORKER_DIR),
            runtime=settings.local_worker_runtime,
            allow_privileged=settings.local_worker_allow_privileged,
            allow_devices=settings.local_worker_allow_devices,
            allow_binds=settings.local_worker_allow_binds,
        )
        self.api_addr = api_addr
        self.peers = peers
        # The agent gets this long to stop (its containers keep running) before it is cancelled.
        self.stop_grace_s = settings.shutdown_grace_s
        self._stop = asyncio.Event()
        self._agent: WorkerAgent | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="local-worker")

    async def stop(self) -> None:
        """Stop the agent (its containers keep running); cancel it if it takes longer than the grace."""
        self._stop.set()
        if self._task is None:
            return
        if self._agent is None or self._agent.worker_loop is None:
            # Still joining (or waiting to retry): nothing runs yet that needs an orderly stop.
            self._task.cancel()
        _, pending = await asyncio.wait({self._task}, timeout=self.stop_grace_s)
        if pending:
            log.warning("the local worker did not stop within %g s; cancelled", self.stop_grace_s)
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        delay, max_delay = self.settings.retry_initial_delay_s, self.settings.retry_max_delay_s
        data_dir = private_data_dir(self.settings.resolved_data_dir)
        runtime_refused = False
        while not self._stop.is_set():
            token = None
            try:
                token = None if identity.load(data_dir) is not None else await self._worker_token()
                self._agent = WorkerAgent(self.settings, token=token, announce=_announce)
                status = await self._agent.run(self._stop)
            except (CorruptStateError, UnauthorizedError) as exc:
                if token is not None:  # a join refused: try again later
                    log.warning("local worker: %s; retrying", exc)
                else:  # its state cannot be resumed (damaged, or its certificate expired): no retry helps
                    log.error("the local worker cannot start: %s", exc)
                    return
            except ConfigError as exc:  # no runtime it may use (auto = docker and no engine answers)
                # Kept trying (an engine may start after the manager), but said once: the process runtime
                # is never a silent fallback (docs/security.md).
                level = logging.DEBUG if runtime_refused else logging.ERROR
                log.log(level, "the local worker cannot run tasks: %s (or --manager-only); retrying", exc)
                runtime_refused = True
            except WarrenError as exc:  # the join timed out, no manager answered: try again later
                log.warning("local worker: %s; retrying", exc)
            except Exception:  # a task boundary: the manager keeps serving without its local worker
                log.exception("the local worker failed; restarting it")
            else:
                if status != 0:
                    log.error(
                        "the local worker stopped (its node was removed?); remove %s to join it again "
                        "at the next start",
                        data_dir,
                    )
                return
            try:
                async with asyncio.timeout(delay):
                    await self._stop.wait()
            except TimeoutError:
                pass
            delay = min(delay * 2, max_delay)

    async def _worker_token(self) -> str:
        """A fresh worker join token from this manager's own API (a follower forwards the request)."""
        delay, max_delay = self.settings.retry_initial_delay_s, self.settings.retry_max_delay_s
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


def _announce(line: str) -> None:
    log.info("local worker: %s", line)
