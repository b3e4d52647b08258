"""The worker's session with the managers (POST /v1/dispatcher/session, long-polled): the heartbeat
that keeps the node up, and the channel its assignments and log requests arrive on.

The next call goes out as soon as an answer arrives, so the leader hears from the worker at least
once per heartbeat period. When a full round of managers fails, the worker is cut off: it says so
once, keeps running its tasks on its own, and retries with a growing pause until a manager answers.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from warren.config import WorkerSettings
from warren.errors import UnavailableError, WarrenError
from warren.runtime.base import NodeResources
from warren.worker.backoff import Backoff
from warren.worker.client import NodeRemovedError, WorkerClient
from warren.worker.volumes import VolumeKeeper

log = logging.getLogger(__name__)


class SessionListener(Protocol):
    """What the worker's loop does with the session's news."""

    def known_digest(self) -> str | None: ...

    def assignments_received(self, digest: str | None, tasks: list[dict[str, Any]] | None) -> None:
        """A manager answered: new assignments (or None: the worker's are current)."""
        ...

    def log_requested(self, request: Mapping[str, Any]) -> None: ...

    def secrets_received(self, values: Mapping[str, Any]) -> None:
        """Values (base64) of the secrets this node's tasks use, sent with assignments (memory only)."""
        ...

    def configs_received(self, values: Mapping[str, Any]) -> None:
        """Contents (base64) of the configs this node's tasks use, sent with assignments (kept on disk)."""
        ...

    def known_endpoints(self) -> str | None:
        """The digest of the service endpoints this worker holds (None: none)."""
        ...

    def endpoints_received(self, doc: Any) -> None:
        """The cluster's service endpoints (the answer's `endpoints`, unchecked; None: unchanged)."""
        ...

    def connectivity_changed(self, online: bool) -> None: ...

    def running_count(self) -> int: ...


class WorkerSession:
    def __init__(
        self,
        client: WorkerClient,
        settings: WorkerSettings,
        listener: SessionListener,
        *,
        addr: str,
        labels: Mapping[str, str],
        resources: NodeResources,
        heartbeat_period_s: float,
        announce: Callable[[str], None],
        clock: Callable[[], float] = time.monotonic,
        volumes: VolumeKeeper | None = None,
    ) -> None:
        self.client = client
        self.settings = settings
        self.listener = listener
        self.addr = addr
        self.labels = dict(labels)
        self.resources = resources
        # How long the leader holds a session call (told in every answer); seconds.
        self.heartbeat_period_s = heartbeat_period_s
        self.announce = announce
        self.clock = clock
        # The worker's volumes: reported when they changed; removed when a manager asks.
        self.volumes = volumes
        self.online = False  # the last session call reached a manager
        # Whether the last answer carried the `endpoints` key: only then does a call send
        # `known_endpoints` (a manager of an earlier version refuses keys it does not know; one that
        # knows endpoints puts the key in every answer, so the first answer tells).
        self._endpoints_known = False
        self._outage_logged = False

    @property
    def cut_off(self) -> bool:
        """No manager answers: every one failed in the last round, or none answered for longer than a
        held session call may take."""
        grace = self.heartbeat_period_s + self.settings.session_timeout_s
        return self.client.round_failed or self.clock() - self.client.last_ok > grace

    async def run(self) -> None:
        """Session calls until cancelled; NodeRemovedError ends it."""
        backoff = Backoff(self.settings.retry_initial_delay_s, self.settings.retry_max_delay_s)
        first = True
        describe = True  # addr, labels and resources not yet taken by a manager since the start
        while True:
            body: dict[str, Any] = {"known": self.listener.known_digest()}
            with_endpoints = self._endpoints_known
            if with_endpoints:
                body["known_endpoints"] = self.listener.known_endpoints()
            # The call that carries the resources also says "these are all my volumes" (no `volumes`:
            # none), so it waits for a first listing of them: one that failed must not read as none.
            described = describe and (self.volumes is None or await self.volumes.inventory() is not None)
            if described:  # the leader records a changed address, labels or resources
                body.update(addr=self.addr, labels=self.labels, resources=self.resources.to_doc())
            volumes = None if self.volumes is None else await self.volumes.report()
            if volumes is not None:
                body["volumes"] = volumes
            try:
                answer = await self.client.session(body, self.heartbeat_period_s)
            except UnavailableError as exc:
                self._went_offline(str(exc))
                await asyncio.sleep(backoff.delay())
                continue
            except NodeRemovedError:
                raise
            except WarrenError as exc:  # refused (400...): a manager of another version? keep trying
                if with_endpoints:  # an older manager leads now? the next call goes without the key
                    log.warning("manager %s refused a session call with known_endpoints (%s); trying "
                                "without it", self.client.current, exc)
                    self._endpoints_known = False
                    continue
                log.warning("manager %s refused the session call: %s", self.client.current, exc)
                await asyncio.sleep(backoff.delay())
                continue
            backoff.reset()
            if self.volumes is not None and (volumes is not None or described):
                self.volumes.sent(volumes or [])  # a first call without the key said "none"
            if described:
                describe = False
            if first:
                first = False
                self.announce(f"Connected to manager {self.client.current}")
            self._came_online()
            self._take(answer, body)

    def _went_offline(self, why: str) -> None:
        if not self._outage_logged:  # once per outage
            self._outage_logged = True
            log.warning(
                "%s; this worker keeps its %d running tasks going (restarting crashed ones in place) "
                "and keeps trying", why, self.listener.running_count(),
            )
        self.online = False
        self.listener.connectivity_changed(False)

    def _came_online(self) -> None:
        if self._outage_logged:
            self._outage_logged = False
            log.info("manager %s answers again", self.client.current)
        if not self.online:
            self.online = True
            self.listener.connectivity_changed(True)

    def _take(self, answer: Mapping[str, Any], sent: Mapping[str, Any]) -> None:
        period = answer.get("heartbeat_period_s")
        if isinstance(period, int | float) and period > 0:
            self.heartbeat_period_s = float(period)
        tasks = answer.get("assignments")
        digest = answer.get("digest")
        values = answer.get("secrets")
        if isinstance(values, Mapping):  # before the tasks that need them are looked at
            self.listener.secrets_received(values)
        contents = answer.get("configs")
        if isinstance(contents, Mapping):
            self.listener.configs_received(contents)
        knows = "endpoints" in answer
        if knows != self._endpoints_known:
            log.info("manager %s %s", self.client.current, "sends service endpoints" if knows else
                     "sends no service endpoints (an earlier version): names are not kept current")
            self._endpoints_known = knows
        if knows and "known_endpoints" in sent:
            self.listener.endpoints_received(answer["endpoints"])
        self.listener.assignments_received(
            None if digest is None else str(digest), None if tasks is None else list(tasks)
        )
        for request in answer.get("log_requests") or ():
            self.listener.log_requested(request)
        remove = answer.get("remove_volumes")
        if isinstance(remove, list) and self.volumes is not None:
            self.volumes.remove(remove)
        if self.volumes is not None:
            self.volumes.stored(answer.get("volumes_digest"))
