"""This term's dispatcher, for the service objects that need the leader's worker sessions."""

from __future__ import annotations

from typing import TYPE_CHECKING

from warren.errors import UnavailableError

if TYPE_CHECKING:
    from warren.manager.dispatcher import Dispatcher
    from warren.manager.leadership import LeaderServices


class LeaderDispatcher:
    def __init__(self, services: LeaderServices) -> None:
        self.services = services

    def get(self) -> Dispatcher:
        """This term's dispatcher; UnavailableError while this manager does not lead (or its leader
        services are still starting: a worker retries)."""
        dispatcher = self.maybe()
        if dispatcher is None:
            raise UnavailableError("worker sessions are served by the leader, which is starting them; retry")
        return dispatcher

    def maybe(self) -> Dispatcher | None:
        return self.services.dispatcher
