"""Scenario `leader_failover`: how long a client's API writes fail when the leader manager goes away.

On one 3-manager cluster formed through the CLI (default Raft timers), the client procedure of
benches/client_failover.py runs with three ways of losing the leader, interleaved trial by trial:

- `sigkill`: SIGKILL of the leader's process group (a crash or power cut); recovery: restart it with
  its own command (it resumes from its data dir).
- `sigstop`: SIGSTOP of the leader's process group (a frozen leader: its sockets stay open, so writes
  forwarded to it hang until the client's attempt timeout); recovery: SIGCONT, then it must learn the
  new term and become a follower again.
- `graceful`: SIGTERM of the leader, which hands leadership to the most up-to-date voter before it
  exits (warren/daemons/manager.py, `shutdown_transfer_timeout_s`); recovery: wait for the exit, then
  restart it. Each trial also records what the manager's log says about the hand-over.

Each is measured from the signal to the first write acknowledged through a survivor (sent after it).
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from benches.client_failover import ClientParams, failover_row, run_trials
from benches.manager_api import service_write, written
from benches.managers import HarnessError, ManagerCluster, ManagerProc

SCENARIO = "leader_failover"
MANAGERS = 3
VARIANTS = ("sigkill", "sigstop", "graceful")
SURVIVOR = "first write acknowledged through a survivor (client retrying round-robin)"
EVENTS = {
    "sigkill": f"SIGKILL of the leader's process group → {SURVIVOR}",
    "sigstop": f"SIGSTOP of the leader's process group (frozen, sockets open) → {SURVIVOR}",
    "graceful": f"SIGTERM of the leader (it hands leadership over, then exits) → {SURVIVOR}",
}
HANDED_OVER = "leadership handed to raft id"
NOT_HANDED_OVER = "could not hand leadership over before shutdown:"


@dataclass(frozen=True)
class LeaderFailoverParams:
    trials: int = 20  # disruptions of each variant; trials
    variants: tuple[str, ...] = VARIANTS  # which of VARIANTS to run
    client: ClientParams = field(default_factory=ClientParams)
    exit_timeout_s: float = 30.0  # a SIGTERMed manager that has not exited by then is killed; seconds
    max_wall_s: float = 1500.0  # stop starting trials after this long (recorded); seconds

    @classmethod
    def smoke(cls) -> LeaderFailoverParams:
        """One trial of each variant: keeps the scenario working in CI (numbers not judged)."""
        return cls(trials=1, max_wall_s=120.0)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class WarrenManagers:
    """A formed ManagerCluster as a client_failover.Cluster: signals and recovery per variant."""

    def __init__(self, cluster: ManagerCluster, params: LeaderFailoverParams) -> None:
        self.cluster = cluster
        self.params = params
        self._signalled_t = 0.0
        self._log_offset = 0

    @property
    def members(self) -> list[ManagerProc]:
        return self.cluster.managers

    def wait_stable(self) -> ManagerProc:
        return self.cluster.wait_stable()

    def disrupt(self, member: Any, variant: str) -> None:
        m: ManagerProc = member
        self._signalled_t = time.perf_counter()
        self._log_offset = m.log_size()
        m.disrupt(variant)

    def recover(self, member: Any, variant: str) -> dict[str, Any]:
        m: ManagerProc = member
        extra: dict[str, Any] = {}
        if variant == "sigstop":
            m.thaw()
            self.cluster.wait_member(m)
            self.cluster.wait_stable()
            return extra
        if variant == "graceful":
            code = m.wait_exit(self.params.exit_timeout_s)
            extra["exit_s"] = time.perf_counter() - self._signalled_t if code is not None else None
            extra["exit_code"] = code
            if code is None:
                m.kill()
            extra.update(handover(m.log_since(self._log_offset)))
        self.cluster.recover(m)
        return extra


_STAMP = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) ")


def handover(log: str) -> dict[str, Any]:
    """What a SIGTERMed leader's log says: whether it handed leadership over, and the time from its
    "stop requested" line to the hand-over line (by the log's millisecond timestamps)."""
    lines = log.splitlines()

    def stamp(text: str) -> float | None:
        line = next((ln for ln in lines if text in ln), None)
        match = _STAMP.match(line) if line else None
        if match is None:
            return None
        return datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()

    requested, handed = stamp("stop requested"), stamp(HANDED_OVER)
    failed = next((ln for ln in lines if NOT_HANDED_OVER in ln), None)
    return {
        "handed_over": handed is not None,
        "handover_log_s": handed - requested if handed is not None and requested is not None else None,
        **({"handover_error": failed.split(NOT_HANDED_OVER, 1)[1].strip()} if failed else {}),
    }


def run(work_dir: Path, params: LeaderFailoverParams) -> dict[str, Any]:
    loadavg_before = os.getloadavg()
    with ManagerCluster(work_dir / SCENARIO) as cluster:
        try:
            make = service_write("f-", cluster.start(MANAGERS))
        except HarnessError as exc:
            result: dict[str, Any] = {"trials": {v: [] for v in params.variants}, "error": str(exc)}
        else:
            result = run_trials(
                WarrenManagers(cluster, params),
                make,
                written,
                params.variants,
                params.trials,
                params.client,
                params.max_wall_s,
            )
    result["loadavg"] = {"before": loadavg_before, "after": os.getloadavg()}
    what = f"Warren API, {MANAGERS} managers, default Raft timers (heartbeat 50 ms, election 150-300 ms)"
    rows = []
    for variant in params.variants:
        records = result["trials"][variant]
        row = failover_row(
            SCENARIO, f"{SCENARIO}/{variant}", what, EVENTS[variant], records, params.client, result["error"]
        )
        if variant == "graceful":
            row["handed_over"] = sum(1 for r in records if r.get("handed_over"))
        rows.append(row)
    return {
        "status": "ok" if result["error"] is None else "error",
        "error": result["error"],
        "config": {"managers": MANAGERS, **params.as_dict()},
        "results": result,
        "rows": rows,
    }
