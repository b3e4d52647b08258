"""Service logs: the output of a service's tasks, asked of their workers through the leader's
dispatcher and relayed to the client as one stream (leader only)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

from warren import config
from warren.errors import ConflictError, NotFoundError
from warren.manager.consensus import Consensus
from warren.manager.control.leader import LeaderDispatcher
from warren.manager.logrelay import LogRelay, LogStream
from warren.store import queries


@dataclass(frozen=True, slots=True)
class LogFeed:
    """One client's log stream, with the relay (of the term it was opened in) that feeds it."""

    stream: LogStream
    relay: LogRelay

    def chunks(self) -> AsyncIterator[bytes]:
        return self.stream.chunks()

    def close(self) -> None:
        """The client went away, or every task's output ended."""
        self.relay.close_stream(self.stream)


class Logs:
    def __init__(
        self, settings: config.OrchestratorSettings, consensus: Consensus, dispatcher: LeaderDispatcher
    ) -> None:
        self.settings = settings
        self.consensus = consensus
        self.dispatcher = dispatcher

    def open(self, service: str, task_id: str | None, follow: bool, tail: int | None) -> LogFeed:
        """A stream of the output of one task of `service` (`task_id`) or of each of its tasks that
        is not final. The caller closes it once done with it."""
        dispatcher = self.dispatcher.get()
        conn = self.consensus.store.conn
        svc = queries.service(conn, service)
        if svc is None:
            raise NotFoundError(f"no service named {service!r}")
        if task_id is not None:
            task = queries.task(conn, task_id)
            if task is None or task["service_id"] != svc["id"]:
                raise NotFoundError(f"service {service!r} has no task {task_id!r}")
            targets = [task]
        else:
            targets = queries.tasks(conn, service_id=svc["id"], include_final=False)
        usable = []
        why = []
        for t in targets:
            if t["node"] is None or t["container_id"] is None:
                why.append(f"task {t['name']} has no container yet (state {t['state']})")
            elif not dispatcher.connected(t["node"]):
                why.append(f"node {t['node']} of task {t['name']} has no session with the leader")
            else:
                usable.append(t)
        if not usable:
            raise ConflictError(why[0] if why else f"service {service!r} has no task to show")
        stream = LogStream(prefixed=len(usable) > 1, pickup_timeout_s=self.settings.node_down_grace_s)
        for t in usable:
            dispatcher.logs.open(
                stream,
                node=t["node"],
                task_id=t["id"],
                container_id=t["container_id"],
                follow=follow,
                tail=tail,
                label=t["name"],
            )
        dispatcher.wake()
        return LogFeed(stream, dispatcher.logs)
