"""A manager's replicated state, its secrets and configs in one process, for the tests of the secrets,
the configs and the API's checks: a real store fed through the in-memory Proposer (no Raft), the data
key, and the secret, config and service routes over them."""

from __future__ import annotations

import base64
import sqlite3
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from fastapi import Depends, FastAPI

from tests.unit.manager.proposer import Proposer
from warren.api import routes_configs, routes_secrets, routes_services
from warren.config import ManagerSettings
from warren.manager.control.configs import Configs
from warren.manager.control.secrets import Secrets
from warren.manager.control.services import Services
from warren.spec.service import ServiceSpec, decode
from warren.store import commands as c
from warren.store.machine import Store

T0 = 1_800_000_000.0
FOUNDER = c.ManagerRecord("manager-1-aaaaaa", 1, "127.0.0.1:8080", "127.0.0.1:7946")
KEY = bytes(range(32))
VALUE = b"hunter2-correct-horse-battery-staple"
VALUE_B64 = base64.b64encode(VALUE).decode()
SPEC = {"image": "busybox", "replicas": 1, "driver": "docker"}


class World:
    def __init__(self, tmp: Path) -> None:
        self.dir = tmp
        self.store = Store(str(tmp))
        self.store.restore(None)
        self.propose = Proposer(self.store)
        self.propose.apply(c.InitCluster("cluster-t", T0, FOUNDER))
        self.secrets = Secrets(self.store, self.propose, KEY, ManagerSettings().max_secret_bytes)
        self.configs = Configs(self.store, self.propose, ManagerSettings().max_config_bytes)

    @property
    def conn(self) -> sqlite3.Connection:
        return self.store.conn

    def service(
        self, name: str, *secret_names: str, service_id: str | None = None, configs: list[Any] | None = None
    ) -> None:
        """Service `name` naming secrets `secret_names` and `configs` (ConfigRef documents)."""
        spec = decode(ServiceSpec, {**SPEC, "secrets": list(secret_names), "configs": configs or []})
        self.propose.apply(c.CreateService(service_id or f"svc-{name}", name, spec, T0))


def add_api_routes(app: FastAPI, world: World) -> None:
    """The secret, config and service routes, over the world's store and its one-node proposer."""
    consensus: Any = SimpleNamespace(store=world.store, propose=world.propose)
    routes_secrets.add_routes(app, world.secrets, Depends(lambda: None))
    routes_configs.add_routes(app, world.configs, Depends(lambda: None))
    routes_services.add_routes(app, Services(consensus), Depends(lambda: None))
