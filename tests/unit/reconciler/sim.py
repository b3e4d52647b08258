"""A simulated cluster for reconciler tests: a real Store, the planner's commands applied to it through
the wire codec (as Raft would), and fake workers that act on their assignments by proposing the
status reports a real worker would.

Time is simulated (`sim.now`); nothing sleeps. `settle()` runs plan/apply/work until nothing changes
(and fails the test if that never happens); `run_until()` also jumps the clock to the plan's
`wake_at` until a condition holds.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from warren.api import models
from warren.config import OrchestratorSettings
from warren.reconciler import Plan, plan
from warren.spec import taskstate
from warren.spec.service import ServiceSpec, decode
from warren.store import commands as c
from warren.store.machine import Store

T0 = 1_800_000_000.0
GIB = 1024**3
MIB = 1024**2
TOKEN_HASH = "ab" * 32
FOUNDER = c.ManagerRecord("manager-1", 1, "127.0.0.1:8080", "127.0.0.1:7946")


class NoConvergence(AssertionError):
    pass


class Sim:
    def __init__(self, tmp_path: Path, settings: OrchestratorSettings | None = None) -> None:
        self.store = Store(str(tmp_path))
        self.store.restore(None)
        self.settings = settings or OrchestratorSettings()
        self.now = T0
        self.index = 0
        self._ids = itertools.count(1)
        self.rng = random.Random(4)
        # Nodes whose worker process is gone: it reports nothing until it comes back.
        self.dead: set[str] = set()
        # Tasks whose spec has one of these images exit with status 1 as soon as they start.
        self.failing_images: set[str] = set()
        # Tasks whose spec has one of these images run but report `unhealthy`.
        self.unhealthy_images: set[str] = set()
        # Nodes whose worker is alive but slow: it does not act on its assignments yet.
        self.held: set[str] = set()
        self.plans: list[Plan] = []
        # Called after every applied batch: tests check invariants at every intermediate state.
        self.observers: list[Callable[[], None]] = []
        self.apply(
            c.InitCluster("cluster-1", self.now, FOUNDER),
            c.CreateToken("tok-1", "worker", TOKEN_HASH, self.now, self.now + 10**9, False),
        )

    # -- plumbing ---------------------------------------------------------------------------------

    def new_id(self) -> str:
        return f"t-{next(self._ids):010x}"

    def apply(self, *cmds: c.Command) -> list[Any]:
        """Apply commands as consecutive log entries (through encode/decode); refusals fail the test."""
        entries = []
        for cmd in cmds:
            self.index += 1
            entries.append((self.index, 1, c.encode(cmd)))
        answers = [orjson.loads(r) for r in self.store.apply(entries)]
        for cmd, answer in zip(cmds, answers, strict=True):
            assert "error" not in answer, f"{cmd.OP} refused: {answer}"
        for observe in self.observers:
            observe()
        return [a["ok"] for a in answers]

    def plan(self) -> Plan:
        return plan(self.store.conn, self.now, self.settings, self.new_id)

    def step(self) -> Plan:
        """One reconcile pass, its commands applied in a shuffled order: the leader proposes them all
        at once, so a plan must not depend on the order in which they commit."""
        p = self.plan()
        self.plans.append(p)
        if p.commands:
            shuffled = list(p.commands)
            self.rng.shuffle(shuffled)
            self.apply(*shuffled)
        return p

    def settle(self, max_rounds: int = 60) -> Plan:
        """Plan, apply and let the workers act until neither has anything left to do."""
        for _ in range(max_rounds):
            p = self.step()
            reports = self.work()
            if not p.commands and not reports:
                return p
        raise NoConvergence(f"no convergence in {max_rounds} rounds; last plan: {self.plans[-1].commands}")

    def run_until(self, condition: Callable[[], bool], *, limit_s: float = 120.0) -> None:
        """Settle, jumping the clock to each wake_at, until `condition` holds (fails after limit_s)."""
        deadline = self.now + limit_s
        while True:
            p = self.settle()
            if condition():
                return
            if p.wake_at is None or p.wake_at > deadline:
                raise AssertionError(f"condition not reached by t+{limit_s}s (wake_at {p.wake_at})")
            assert p.wake_at > self.now, "wake_at must lie in the future"
            self.now = p.wake_at

    def advance(self, seconds: float) -> None:
        self.now += seconds

    # -- the cluster ------------------------------------------------------------------------------

    def add_node(
        self,
        name: str,
        *,
        cpus: float | None = 4.0,
        memory: int | None = 8 * GIB,
        drivers: tuple[str, ...] = ("docker", "process"),
        labels: dict[str, str] | None = None,
        allow_privileged: bool = False,
        allow_devices: tuple[str, ...] = (),
        allow_binds: tuple[str, ...] = (),
    ) -> None:
        resources: dict[str, Any] = {"drivers": list(drivers)}
        if allow_privileged:
            resources["allow_privileged"] = True
        if allow_devices:
            resources["allow_devices"] = list(allow_devices)
        if allow_binds:
            resources["allow_binds"] = list(allow_binds)
        if cpus is not None:
            resources["cpus"] = cpus
        if memory is not None:
            resources["memory"] = memory
        self.apply(
            c.RegisterWorker(name, TOKEN_HASH, "cd" * 32, "127.0.0.9", labels or {}, resources, self.now)
        )

    def node_down(self, name: str) -> None:
        """The worker dies and the dispatcher writes its node down after the grace period."""
        self.dead.add(name)
        self.apply(c.SetNodeState(name, "down", self.now))

    def node_up(self, name: str) -> None:
        self.dead.discard(name)
        self.apply(c.SetNodeState(name, "ready", self.now))

    def drain(self, name: str) -> None:
        self.apply(c.SetNodeAvailability(name, "drain", self.now))

    def activate(self, name: str) -> None:
        self.apply(c.SetNodeAvailability(name, "active", self.now))

    def remove_node(self, name: str) -> None:
        self.dead.add(name)
        self.apply(c.RemoveNode(name, self.now))

    def create_service(self, name: str, **spec: Any) -> str:
        service_id = f"svc-{name}"
        body = models.ServiceSpec.model_validate(spec, strict=False).model_dump(mode="json")
        self.apply(c.CreateService(service_id, name, decode(ServiceSpec, body), self.now))
        return service_id

    def update_service(self, name: str, **changes: Any) -> None:
        current = self.service(name)["spec"]
        body = models.ServiceSpec.model_validate({**current, **changes}, strict=False).model_dump(mode="json")
        self.apply(c.UpdateService(name, {k: body[k] for k in changes}, self.now))

    # -- workers ----------------------------------------------------------------------------------

    def work(self) -> int:
        """Every live worker acts once on its assignments (assigned -> starting -> running, or failed
        for a failing image; asked to stop -> shutdown); the number of status reports made."""
        updates: list[c.TaskStatus] = []
        rows = self.store.conn.execute(
            "SELECT t.id, t.node, t.state, t.desired_state, t.spec"
            " FROM tasks t JOIN nodes n ON n.name = t.node"
            f" WHERE n.state = 'ready' AND t.state NOT IN {taskstate.TERMINAL_SQL}"
            " ORDER BY t.id"
        ).fetchall()
        for row in rows:
            if row["node"] in self.dead or row["node"] in self.held:
                continue
            spec = orjson.loads(row["spec"])
            if row["desired_state"] == "shutdown":
                updates.append(self._report(row, taskstate.SHUTDOWN, "stopped", exit_code=0))
            elif row["state"] == taskstate.ASSIGNED:
                updates.append(self._report(row, taskstate.STARTING, "starting"))
            elif row["state"] == taskstate.STARTING:
                if spec.get("image") in self.failing_images:
                    updates.append(self._report(row, taskstate.FAILED, "exited with status 1", exit_code=1))
                elif spec.get("health") is not None:
                    health = "unhealthy" if spec.get("image") in self.unhealthy_images else "healthy"
                    updates.append(self._report(row, taskstate.RUNNING, "started", health=health))
                else:
                    updates.append(self._report(row, taskstate.RUNNING, "started"))
        if updates:
            self.apply(c.SetTaskStatuses(updates))
        return len(updates)

    def _report(self, row: Any, state: str, message: str, **fields: Any) -> c.TaskStatus:
        return c.TaskStatus(row["id"], state, message, self.now, node=row["node"], **fields)

    def crash(self, task_id: str, exit_code: int = 1) -> None:
        """A running task's container exits by itself."""
        state = taskstate.COMPLETE if exit_code == 0 else taskstate.FAILED
        node = self.task(task_id)["node"]
        self.apply(
            c.SetTaskStatuses(
                [
                    c.TaskStatus(
                        task_id, state, f"exited with status {exit_code}", self.now, node, exit_code=exit_code
                    )
                ]
            )
        )

    # -- reading the state ------------------------------------------------------------------------

    def service(self, name: str) -> dict[str, Any]:
        row = self.store.conn.execute("SELECT * FROM services WHERE name = ?", (name,)).fetchone()
        assert row is not None, f"no service {name}"
        doc = dict(row)
        doc["spec"] = orjson.loads(doc["spec"])
        doc["update_status"] = None if doc["update_status"] is None else orjson.loads(doc["update_status"])
        return doc

    def update_state(self, name: str) -> str | None:
        status = self.service(name)["update_status"]
        return None if status is None else str(status["state"])

    def tasks(self, service: str | None = None) -> list[dict[str, Any]]:
        sql = "SELECT t.* FROM tasks t JOIN services s ON s.id = t.service_id"
        args: tuple[str, ...] = ()
        if service is not None:
            sql += " WHERE s.name = ?"
            args = (service,)
        return [dict(r) for r in self.store.conn.execute(sql + " ORDER BY t.created_at, t.id", args)]

    def task(self, task_id: str) -> dict[str, Any]:
        row = self.store.conn.execute("SELECT * FROM tasks WHERE id = ?", (task_id,)).fetchone()
        assert row is not None, f"no task {task_id}"
        return dict(row)

    def live(self, service: str) -> list[dict[str, Any]]:
        """Tasks meant to run (desired running, not final)."""
        return [
            t
            for t in self.tasks(service)
            if t["desired_state"] == "running" and t["state"] not in taskstate.TERMINAL
        ]

    def running(self, service: str) -> list[dict[str, Any]]:
        return [t for t in self.live(service) if t["state"] == taskstate.RUNNING]

    def by_node(self, service: str) -> dict[str, int]:
        """Running tasks per node."""
        counts: dict[str, int] = {}
        for t in self.running(service):
            counts[t["node"]] = counts.get(t["node"], 0) + 1
        return counts

    def slots(self, service: str) -> dict[int, dict[str, Any]]:
        """The live task of each slot (fails if a slot has two)."""
        found: dict[int, dict[str, Any]] = {}
        for t in self.live(service):
            assert t["slot"] not in found, f"slot {t['slot']} has two live tasks"
            found[t["slot"]] = t
        return found
