"""Scenario `partition`: a leader cut off from the network, then the cut healed (catch-up time).

Three managers, each in a network namespace of its own (tests/integration/netns.py NetnsLab: one bridge,
addresses 10.X.Y.1-3, the benchmark process reaching all of them from the root namespace); the cluster
is formed through the CLI with the default Raft timers. Each trial:

1. `partition/leader`: the client procedure of benches/client_failover.py with the leader cut off from
   both other managers (iptables DROP rules in its namespace, `lab.isolate`) as the disruption: from the
   first rule going in to the first write acknowledged by the majority side (the client retrying
   round-robin on the two others, as in leader_failover). The old leader keeps running, cut off.
2. `partition/heal`: `writes` more writes through the majority's new leader (the old leader misses them
   all), then the harness reads the new leader's commit index and removes the rules (`lab.heal`): from
   the heal to the old leader's applied index (its `/v1/ready`, polled every `catch_up_poll_s`) reaching
   that commit index. This includes the old leader learning the new term and stepping down.

Then the old leader must be a ready follower again and every manager must have applied the leader's
commit index before the next trial (or the run stops, recorded). Needs root and `ip netns`:
without them the scenario is reported missing with the reason.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from benches.client_failover import ClientParams, failover_row, run_trials
from benches.manager_api import service_write, written
from benches.managers import STABLE_TIMEOUT_S, HarnessError, HttpError, ManagerCluster, ManagerProc
from benches.stats import summarize_ms, trial_row
from tests.integration.netns import NetnsError, NetnsLab, unavailable_reason

SCENARIO = "partition"
MANAGERS = 3
PORTS = (8080, 7946, 9090)  # API, Raft, metrics: each manager has an address of its own
VARIANT = "partition"


@dataclass(frozen=True)
class PartitionParams:
    trials: int = 5  # partitions (each gives one `leader` and one `heal` number); trials
    writes: int = 1000  # writes to the majority while the old leader is cut off; writes
    client: ClientParams = field(default_factory=ClientParams)
    write_timeout_s: float = 10.0  # one of those writes without an answer by then fails the trial; seconds
    catch_up_poll_s: float = 0.005  # pause between /v1/ready polls of the healed manager; seconds
    give_up_s: float = 60.0  # a healed manager not caught up by then is a failed heal trial; seconds
    max_wall_s: float = 900.0  # stop starting trials after this long (recorded); seconds

    @classmethod
    def smoke(cls) -> PartitionParams:
        """One trial with 50 writes: keeps the scenario working in CI (numbers not judged)."""
        return cls(trials=1, writes=50, max_wall_s=60.0)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class PartitionedManagers:
    """A ManagerCluster in a NetnsLab as a client_failover.Cluster: the disruption is a cut of the
    leader; recovery writes to the majority, heals, and times the old leader's catch-up."""

    def __init__(self, cluster: ManagerCluster, lab: NetnsLab, params: PartitionParams) -> None:
        self.cluster = cluster
        self.lab = lab
        self.params = params
        self._n = 0  # the next majority write's number
        self._cut_s = 0.0  # how long the last lab.isolate() took

    @property
    def members(self) -> list[ManagerProc]:
        return self.cluster.managers

    def wait_stable(self) -> ManagerProc:
        return self.cluster.wait_stable()

    def host(self, m: ManagerProc) -> int:
        return self.cluster.managers.index(m) + 1

    def disrupt(self, member: Any, variant: str) -> None:
        if variant != VARIANT:
            raise ValueError(f"unknown variant {variant!r}; expected {VARIANT!r}")
        t0 = time.perf_counter()
        try:
            self.lab.isolate(self.host(member))
        except NetnsError as exc:
            raise HarnessError(f"cutting {member.label} off: {exc}") from None
        self._cut_s = time.perf_counter() - t0

    def recover(self, member: Any, variant: str) -> dict[str, Any]:
        old: ManagerProc = member
        extra: dict[str, Any] = {"cut_s": self._cut_s}
        healed = False
        try:
            leader = self._majority_leader(old)
            extra["new_leader"] = leader.label
            extra.update(self._write(leader))
            state = leader.raft_state()
            if state is None or state.get("commit_index") is None:
                raise HarnessError(f"{leader.label} did not report its commit index")
            target = int(state["commit_index"])
            extra["commit_at_heal"] = target
            t0 = time.perf_counter()
            self._heal(old)
            healed = True
            extra["heal_s"] = time.perf_counter() - t0  # removing the rules (within catch_up_s)
            extra.update(self._caught_up(old, target, t0))
        finally:
            if not healed:
                self._heal(old)
        self.cluster.wait_member(old)
        self.cluster.wait_converged()  # the next trial starts from three managers holding the same log
        return extra

    def _heal(self, m: ManagerProc) -> None:
        try:
            self.lab.heal(self.host(m))
        except NetnsError as exc:
            raise HarnessError(f"healing {m.label}: {exc}") from None

    def _majority_leader(self, cut: ManagerProc) -> ManagerProc:
        """The leader both managers of the majority side name (one of them)."""
        others = [m for m in self.cluster.managers if m is not cut]
        deadline = time.monotonic() + STABLE_TIMEOUT_S
        while time.monotonic() < deadline:
            docs = [m.cluster() for m in others]
            addrs = {(d.get("leader") or {}).get("api_addr") if d else None for d in docs}
            if len(addrs) == 1:
                addr = addrs.pop()
                leader = next((m for m in others if m.api_addr == addr), None)
                if leader is not None:
                    return leader
            time.sleep(0.02)
        raise HarnessError(f"the majority side agreed on no leader within {STABLE_TIMEOUT_S:g} s")

    def _write(self, leader: ManagerProc) -> dict[str, Any]:
        """`params.writes` sequential writes through the majority's leader."""
        make = service_write("p-", leader)
        conn = leader.http(self.params.write_timeout_s)
        t0 = time.perf_counter()
        try:
            for _ in range(self.params.writes):
                method, path, body = make(self._n)
                self._n += 1
                try:
                    status, data = conn.request(method, path, body)
                except HttpError as exc:
                    raise HarnessError(f"a write to the majority failed: {exc}") from None
                if not written(status, data):
                    raise HarnessError(f"a write to the majority failed: HTTP {status}: {data[:160]!r}")
        finally:
            conn.close()
        return {"writes": self.params.writes, "writes_s": time.perf_counter() - t0}

    def _caught_up(self, m: ManagerProc, target: int, t0: float) -> dict[str, Any]:
        """Poll `m` until its applied index reaches `target`: catch_up_s (None if not in time)."""
        applied = None
        while time.perf_counter() - t0 < self.params.give_up_s:
            if not m.alive:
                raise HarnessError(m.exit_note())
            doc = m.raft_state(timeout_s=1.0)
            if doc is not None:
                applied = doc.get("applied_index")
                if applied is not None and int(applied) >= target:
                    return {"catch_up_s": time.perf_counter() - t0, "role_when_caught_up": doc.get("role")}
            time.sleep(self.params.catch_up_poll_s)
        return {"catch_up_s": None, "applied_at_give_up": applied}


def run(work_dir: Path, params: PartitionParams) -> dict[str, Any]:
    reason = unavailable_reason()
    if reason is not None:
        return {"status": "missing", "reason": f"needs network namespaces: {reason}", "rows": []}
    loadavg_before = os.getloadavg()
    leftovers: list[str] = []
    try:
        lab = NetnsLab(MANAGERS)
        with lab:
            # The managers die before the lab is torn down (the inner context exits first).
            with ManagerCluster(work_dir / SCENARIO, hosts=list(lab.hosts(PORTS))) as cluster:
                try:
                    make = service_write("c-", cluster.start(MANAGERS))
                except HarnessError as exc:
                    result: dict[str, Any] = {"trials": {VARIANT: []}, "error": f"HarnessError: {exc}"}
                else:
                    result = run_trials(
                        PartitionedManagers(cluster, lab, params),
                        make,
                        written,
                        (VARIANT,),
                        params.trials,
                        params.client,
                        params.max_wall_s,
                    )
        leftovers = lab.leftovers()
    except NetnsError as exc:
        result = {"trials": {VARIANT: []}, "error": f"NetnsError: {exc}"}
    if leftovers:
        result["error"] = (result["error"] + "; " if result["error"] else "") + f"lab leftovers: {leftovers}"
    result["loadavg"] = {"before": loadavg_before, "after": os.getloadavg()}
    records = result["trials"][VARIANT]
    return {
        "status": "ok" if result["error"] is None else "error",
        "error": result["error"],
        "config": {"managers": MANAGERS, **params.as_dict()},
        "results": result,
        "rows": rows(records, params, result["error"]),
    }


def rows(records: list[dict[str, Any]], params: PartitionParams, error: str | None) -> list[dict[str, Any]]:
    what = f"Warren API, {MANAGERS} managers in network namespaces, default Raft timers"
    leader = failover_row(
        SCENARIO,
        f"{SCENARIO}/leader",
        what,
        "leader cut off from both other managers (first iptables rule in) → first write acknowledged by"
        " the majority side (client retrying round-robin)",
        records,
        params.client,
        error,
    )
    leader["cut_p50_ms"] = summarize_ms([r["cut_s"] for r in records if "cut_s" in r]).get("p50_ms")
    healed = [r for r in records if "commit_at_heal" in r]
    heal = trial_row(
        SCENARIO,
        f"{SCENARIO}/heal",
        f"{what}; W={params.writes} writes to the majority while the old leader was cut off",
        "heal (first iptables rule out) → the old leader's applied index reaches the new leader's commit"
        " index read at the heal",
        [r["catch_up_s"] for r in healed if r.get("catch_up_s") is not None],
        [f"not caught up within {params.give_up_s:g} s" for r in healed if r.get("catch_up_s") is None],
    )
    heal["writes"] = params.writes
    if error:
        heal["error"] = error
    return [leader, heal]
