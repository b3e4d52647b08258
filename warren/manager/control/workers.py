"""The worker protocol on the leader (docs/worker-protocol.md): session calls, task status reports and
log chunks, served by this term's dispatcher. The caller checks a worker's session secret first
(`authenticate`); the secret is never logged or echoed."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from msgspec import UNSET, UnsetType

from warren.formats import split_host_port
from warren.manager.consensus import Consensus
from warren.manager.control.leader import LeaderDispatcher
from warren.manager.dispatcher import Dispatcher, NodeReport, check_secret
from warren.manager.logrelay import LogGoneError
from warren.store import commands as c


@dataclass(frozen=True, slots=True)
class LogUpload:
    """A log request of this term that a worker sends the output of one task for."""

    request_id: str
    node: str  # the worker asked for the output
    dispatcher: Dispatcher

    async def deliver(self, data: bytes, end: bool) -> str | None:
        """Queue a chunk for the client (`end`: the task's output is over); None once queued, else
        why the request is gone (the client went away, the node is down): the worker stops sending."""
        self.dispatcher.touch(self.node)
        try:
            await self.dispatcher.logs.deliver(self.request_id, data, end)
        except LogGoneError as exc:
            return str(exc)
        return None


class Workers:
    def __init__(self, consensus: Consensus, dispatcher: LeaderDispatcher) -> None:
        self.consensus = consensus
        self.dispatcher = dispatcher

    def authenticate(self, node: str, secret: str) -> None:
        """UnauthorizedError unless `secret` is worker `node`'s session secret."""
        check_secret(self.consensus.store, node, secret)

    async def session(
        self,
        node: str,
        known: str | None,
        addr: str | None,
        labels: Mapping[str, str] | None,
        resources: dict[str, Any] | None,
        volumes: list[dict[str, Any]] | None = None,
        known_endpoints: str | None | UnsetType = UNSET,
    ) -> dict[str, Any]:
        """One session call: held until the assignments differ from the digest the worker `known`.
        `addr`, `labels`, `resources`: what the worker reports after a start; `volumes`: its volumes,
        when they changed (None: not reported); `known_endpoints`: the digest of the endpoints it has
        (None: none; UNSET: it does not ask for them)."""
        dispatcher = self.dispatcher.get()
        self.consensus.require_quorum_contact(dispatcher.settings.heartbeat_period_s)
        report = None
        if addr is not None or labels is not None or resources is not None or volumes is not None:
            if addr is not None:
                split_host_port(addr, field="addr", default_port=0)
            report = NodeReport(addr, None if labels is None else dict(labels), resources, volumes)
        return await dispatcher.session(node, known, report, known_endpoints)

    async def report_status(self, node: str, updates: list[dict[str, Any]]) -> int:
        """Merge worker `node`'s task status `updates` (TaskStatus fields but the node) into the next
        batch and wait until it has committed; how many were accepted."""
        dispatcher = self.dispatcher.get()
        statuses = [c.TaskStatus(node=node, **u) for u in updates]
        await dispatcher.report_status(node, statuses)
        return len(statuses)

    def log_upload(self, request_id: str) -> LogUpload | None:
        """The log request `request_id` of this term; None if there is none (over, or unknown)."""
        dispatcher = self.dispatcher.get()
        req = dispatcher.logs.get(request_id)
        return None if req is None else LogUpload(request_id, req.node, dispatcher)
