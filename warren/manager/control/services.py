"""Services and their tasks: create, read, update, roll back, remove; `service ps`."""

from __future__ import annotations

import secrets
import time
from typing import Any

from warren.errors import InvalidError, NotFoundError
from warren.manager import configs as config_refs
from warren.manager.consensus import Consensus
from warren.manager.secrets import check_known
from warren.spec.service import ServiceSpec, decode
from warren.store import commands as c
from warren.store import queries


class Services:
    def __init__(self, consensus: Consensus) -> None:
        self.consensus = consensus

    def all(self) -> list[dict[str, Any]]:
        return queries.services(self.consensus.store.conn)

    def get(self, name: str) -> dict[str, Any]:
        service = queries.service(self.consensus.store.conn, name)
        if service is None:
            raise NotFoundError(f"no service named {name!r}")
        return service

    async def create(self, name: str, spec: ServiceSpec) -> dict[str, Any]:
        check_known(self.consensus.store.conn, spec.secrets)
        config_refs.check_known(self.consensus.store.conn, [ref.name for ref in spec.config_list])
        cmd = c.CreateService("svc-" + secrets.token_hex(6), name, spec, time.time())
        return dict(await self.consensus.propose(cmd))

    async def update(self, name: str, changes: dict[str, Any], if_version: int | None) -> dict[str, Any]:
        """Apply `changes` (fields of the spec, nested parts whole) to the spec, if the spec they make is
        a valid one (a process driver needs a command...)."""
        check_known(self.consensus.store.conn, changes.get("secrets") or ())
        config_refs.check_known(self.consensus.store.conn, config_refs.names_in(changes.get("configs")))
        current = self.get(name)
        try:
            decode(ServiceSpec, {**current["spec"], **changes})
        except InvalidError as exc:
            raise InvalidError(f"the updated spec would be invalid: {exc}") from None
        return dict(await self.consensus.propose(c.UpdateService(name, changes, time.time(), if_version)))

    async def remove(self, name: str, if_version: int | None) -> dict[str, Any]:
        return dict(await self.consensus.propose(c.RemoveService(name, time.time(), if_version)))

    async def rollback(self, name: str, if_version: int | None) -> dict[str, Any]:
        """Back to the previous spec, rolled out like an update and reported as a rollback (the
        reconciler marks it `rollback_completed` once no task of the undone spec is left)."""
        command = c.RollbackService(name, time.time(), if_version, requested=True)
        return dict(await self.consensus.propose(command))

    # -- tasks ----------------------------------------------------------------------------------------

    def tasks(self, service: str | None = None, node: str | None = None) -> list[dict[str, Any]]:
        """Tasks (final ones included), of `service` and on `node` when given."""
        sid = None if service is None else str(self.get(service)["id"])
        return queries.tasks(self.consensus.store.conn, service_id=sid, node=node)
