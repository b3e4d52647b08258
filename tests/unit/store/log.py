"""The store's tests' log: a Store fed commands as consecutive entries of a one-node Raft log, and the
cluster (founder, worker token, workers, a service's tasks) the apply and query tests start from."""

from __future__ import annotations

from typing import Any

import orjson

from warren.pki import tokens
from warren.spec.service import ServiceSpec, decode, spec_digest
from warren.store import commands as c
from warren.store.machine import Store

FOUNDER = c.ManagerRecord("manager-1-aaaaaa", 1, "127.0.0.1:8080", "127.0.0.1:7946")
T0 = 1_800_000_000.0
WORKER_TOKEN = "SWMTKN-1-" + "w" * 50
SPEC: dict[str, Any] = {
    "image": "warren-busybox:latest",
    "driver": "docker",
    "command": ["httpd", "-f"],
    "replicas": 2,
    "mode": "replicated",
    "labels": {"tier": "web"},
    "env": {"A": "1"},
    "update": {"parallelism": 1, "order": "stop-first"},
}


def answers(responses: list[bytes]) -> list[dict[str, Any]]:
    return [orjson.loads(r) for r in responses]


class Log:
    """Feeds commands to a store as consecutive log entries, one batch per call."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.index = 0

    def apply(self, *cmds: c.Command | bytes) -> list[dict[str, Any]]:
        entries = []
        for cmd in cmds:
            self.index += 1
            payload = cmd if isinstance(cmd, bytes) else c.encode(cmd)
            entries.append((self.index, 1, payload))
        return answers(self.store.apply(entries))


def dump(store: Store) -> list[Any]:
    """Every replicated row and the schema (the meta table is bookkeeping: applied index, digest)."""
    return [line for line in store.conn.iterdump() if '"meta"' not in line]


def ok(answer: dict[str, Any]) -> Any:
    assert "ok" in answer, answer
    return answer["ok"]


def register(
    name: str, token: str = WORKER_TOKEN, at: float = T0 + 1, addr: str = "127.0.0.5"
) -> c.RegisterWorker:
    return c.RegisterWorker(
        name, tokens.digest(token), f"secret-of-{name}", addr, {"zone": "a"}, {"cpus": 2.0}, at
    )


def cluster_with_workers(log: Log, *names: str) -> None:
    """A cluster with a live worker token, the given workers and the service `web` (svc-1)."""
    ok(log.apply(c.InitCluster("cluster-1", T0, FOUNDER))[0])
    ok(log.apply(c.CreateToken("tw", "worker", tokens.digest(WORKER_TOKEN), T0, T0 + 1000, False))[0])
    for name in names:
        ok(log.apply(register(name))[0])
    ok(log.apply(c.CreateService("svc-1", "web", decode(ServiceSpec, SPEC), T0))[0])


def new_task(task_id: str, node: str | None, slot: int | None = 1, service_id: str = "svc-1") -> c.NewTask:
    spec = decode(ServiceSpec, SPEC)
    state: Any = "pending" if node is None else "assigned"
    return c.NewTask(task_id, service_id, slot, node, state, "", spec.task_spec(), spec_digest(spec))


def status(task_id: str, state: str, at: float, **kw: Any) -> c.SetTaskStatuses:
    return c.SetTaskStatuses([c.TaskStatus(task_id, state, kw.pop("message", state), at, **kw)])
