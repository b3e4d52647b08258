"""Scenario `client_failover`: how long a client's writes fail after kill -9 of the leader manager.

Each trial, on a 3-manager cluster formed once through the CLI: a client thread writes continuously to
the leader (`POST /v1/services`, unique names, one keep-alive connection); after a random lead-in the
harness takes the time and sends SIGKILL to the leader's process group. The client's write in flight
fails; from then on it sends each write to the two survivors in turn (round-robin), moving on at once
on a connection error, a non-2xx answer (503 while there is no leader) or no answer within
`attempt_timeout_s`, and pausing `retry_pause_s` only after a whole round failed. Failover is the time
from the kill to the first acknowledged write that was sent after it. The killed manager is then
restarted with its own command and the next trial waits until it is a ready follower again.

`trial()` is system-neutral: the etcd peer (benches/etcd_peer.py) runs it on etcd with its put.
The attempt timeout matters only where a write can hang (a survivor that has not noticed the leader's
death yet and passes the write on to it): it bounds how long the client waits before trying again.
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

from benches.manager_api import Acked, MakeWrite, created, service_write
from benches.managers import HarnessError, Http, HttpError, ManagerCluster
from benches.stats import percentile

EVENT = "SIGKILL of the leader → first write acknowledged through a survivor (client retrying round-robin)"
MANAGERS = 3


@dataclass(frozen=True)
class ClientFailoverParams:
    trials: int = 20  # kills; trials
    lead_in_s: tuple[float, float] = (0.2, 0.5)  # the client writes to the leader this long first; seconds
    min_writes_before_kill: int = 5  # acknowledged writes to the leader before the kill; writes
    attempt_timeout_s: float = 0.1  # a write with no answer by then is abandoned and retried; seconds
    retry_pause_s: float = 0.002  # pause after a whole round of survivors failed; seconds
    give_up_s: float = 15.0  # a trial with no acknowledged write by then is recorded as failed; seconds
    max_wall_s: float = 1200.0  # stop starting trials after this long (recorded); seconds
    seed: int = 3  # for the lead-in times

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Member(Protocol):
    name: str

    @property
    def addr(self) -> str: ...  # where clients send writes ("host:port")

    def kill(self) -> None: ...  # SIGKILL of its process group; returns once it is reaped


class Cluster(Protocol):
    members: Any  # list of Member

    def wait_stable(self) -> Any: ...  # the leader (a Member) once every live member agrees on it

    def recover(self, member: Any) -> None: ...  # restart a killed member, wait until it is a follower


class Client(threading.Thread):
    """Writes to the leader until told of the kill, then round-robin to the survivors until one acks."""

    def __init__(
        self,
        leader: str,
        survivors: list[str],
        make: MakeWrite,
        acked: Acked,
        params: ClientFailoverParams,
        first: int,
    ) -> None:
        super().__init__(name="failover-client", daemon=True)
        self.leader = leader
        self.survivors = survivors
        self.make = make
        self.acked = acked
        self.params = params
        self.n = first
        self.kill_t: float | None = None  # perf_counter() just before the SIGKILL, set by the harness
        self.killed = threading.Event()  # set once the leader is dead and reaped
        self.stop = threading.Event()
        self.acks_before_kill = 0
        self.leader_errors_before_kill: list[str] = []
        self.ack_t: float | None = None
        self.winner: str | None = None
        self.outcomes: Counter[str] = Counter()
        self.first_errors: list[str] = []
        self.attempts = 0

    def run(self) -> None:
        conn = Http(self.leader, 2.0)  # before the kill a slow write is not a failure
        try:
            while not self.killed.is_set() and not self.stop.is_set():
                method, path, body = self.make(self.n)
                self.n += 1
                try:
                    status, data = conn.request(method, path, body)
                except HttpError as exc:
                    if self.kill_t is None:  # not the kill: note it (the trial is then not clean)
                        self.leader_errors_before_kill.append(str(exc))
                    time.sleep(0.001)  # dead or dying: wait for the harness to confirm
                    continue
                if self.acked(status, data) and self.kill_t is None:
                    self.acks_before_kill += 1
        finally:
            conn.close()
        if self.stop.is_set():
            return
        self._until_acked()

    def _until_acked(self) -> None:
        assert self.kill_t is not None
        conns = [Http(a, self.params.attempt_timeout_s) for a in self.survivors]
        deadline = self.kill_t + self.params.give_up_s
        try:
            i = 0
            failed_in_round = 0
            while time.perf_counter() < deadline and not self.stop.is_set():
                conn = conns[i % len(conns)]
                i += 1
                method, path, body = self.make(self.n)
                self.n += 1
                self.attempts += 1
                try:
                    status, data = conn.request(method, path, body)
                except HttpError as exc:
                    kind = "timeout" if "timed out" in str(exc) else "connection error"
                    self._failed(kind, str(exc))
                else:
                    if self.acked(status, data):
                        self.ack_t = time.perf_counter()
                        self.winner = conn.addr
                        self.outcomes["acked"] += 1
                        return
                    self._failed(f"HTTP {status}", f"{conn.addr}: HTTP {status}: {data[:160]!r}")
                failed_in_round += 1
                if failed_in_round >= len(conns):
                    failed_in_round = 0
                    time.sleep(self.params.retry_pause_s)
        finally:
            for c in conns:
                c.close()

    def _failed(self, kind: str, text: str) -> None:
        self.outcomes[kind] += 1
        if len(self.first_errors) < 4:
            self.first_errors.append(text)


def trial(
    cluster: Cluster,
    i: int,
    make: MakeWrite,
    acked: Acked,
    params: ClientFailoverParams,
    first: int,
    rng: random.Random,
) -> dict[str, Any]:
    """One kill: returns the trial's record (`failover_s` None when no write was acknowledged in time)."""
    victim = cluster.wait_stable()
    survivors = [m for m in cluster.members if m is not victim]
    client = Client(victim.addr, [m.addr for m in survivors], make, acked, params, first)
    lead_in = rng.uniform(*params.lead_in_s)
    reaped = None
    client.start()
    try:
        t0 = time.perf_counter()
        deadline = t0 + lead_in + 10.0
        while (
            time.perf_counter() - t0 < lead_in or client.acks_before_kill < params.min_writes_before_kill
        ) and (time.perf_counter() < deadline and client.is_alive()):
            time.sleep(0.005)
        client.kill_t = time.perf_counter()
        victim.kill()  # SIGKILL, then reaped: nothing the victim does can count after this
        reaped = time.perf_counter() - client.kill_t
        client.killed.set()
        client.join(params.give_up_s + 5.0)
    finally:
        client.stop.set()
        client.join(5.0)
    failover = (
        client.ack_t - client.kill_t if client.ack_t is not None and client.kill_t is not None else None
    )
    record: dict[str, Any] = {
        "trial": i,
        "killed": victim.name,
        "lead_in_s": lead_in,
        "acks_before_kill": client.acks_before_kill,
        "failover_s": failover,
        "kill_to_reaped_s": reaped,  # the client tries the survivors from then on (within failover_s)
        "acked_by": client.winner,
        "attempts_after_kill": client.attempts,
        "outcomes": dict(client.outcomes),
        "first_errors": client.first_errors,
        "next": client.n,
    }
    if client.leader_errors_before_kill:
        record["leader_errors_before_kill"] = client.leader_errors_before_kill[:3]
    t_recover = time.perf_counter()
    cluster.recover(victim)
    record["recover_s"] = time.perf_counter() - t_recover
    return record


def run_trials(
    cluster: Cluster, make: MakeWrite, acked: Acked, params: ClientFailoverParams
) -> dict[str, Any]:
    """`params.trials` kills on a formed cluster; trials, a summary and the error that stopped them."""
    rng = random.Random(params.seed)
    trials: list[dict[str, Any]] = []
    error = None
    n = 0
    t_start = time.monotonic()
    try:
        for i in range(params.trials):
            if time.monotonic() - t_start > params.max_wall_s:
                error = f"stopped after {len(trials)} trials: over the {params.max_wall_s:g} s budget"
                break
            record = trial(cluster, i, make, acked, params, n, rng)
            n = record.pop("next")
            trials.append(record)
    except HarnessError as exc:
        error = f"{type(exc).__name__}: {exc}"
    return {"summary": summarize(trials, params), "trials": trials, "error": error}


def summarize(trials: list[dict[str, Any]], params: ClientFailoverParams) -> dict[str, Any]:
    times = sorted(t["failover_s"] for t in trials if t.get("failover_s") is not None)
    summary: dict[str, Any] = {
        "trials": len(trials),
        "failed_trials": sum(1 for t in trials if t.get("failover_s") is None),
        "unclean_trials": sum(1 for t in trials if t.get("leader_errors_before_kill")),
        "timeouts": sum(t["outcomes"].get("timeout", 0) for t in trials),
    }
    if times:
        summary.update(
            {
                "min_ms": 1000 * times[0],
                "mean_ms": 1000 * sum(times) / len(times),
                "p50_ms": 1000 * percentile(times, 50),
                "p90_ms": 1000 * percentile(times, 90),
                "p99_ms": 1000 * percentile(times, 99),
                "max_ms": 1000 * times[-1],
            }
        )
    return summary


def failover_row(
    scenario: str, key: str, what: str, result: dict[str, Any], params: ClientFailoverParams
) -> dict[str, Any]:
    s = result["summary"]
    row: dict[str, Any] = {
        "scenario": scenario,
        "key": key,
        "what": what,
        "event": EVENT,
        "trials": s["trials"],
        **{k: s.get(k) for k in ("p50_ms", "p90_ms", "p99_ms", "max_ms")},
    }
    if s["failed_trials"]:
        row["failed_trials"] = s["failed_trials"]
    notes = []
    if s["failed_trials"]:
        notes.append(
            f"{s['failed_trials']} trial(s) without an acknowledged write within {params.give_up_s:g} s"
        )
    if s["unclean_trials"]:
        notes.append(f"{s['unclean_trials']} trial(s) had failed writes to the leader before the kill")
    if s["timeouts"]:
        notes.append(f"{s['timeouts']} attempt(s) abandoned after {params.attempt_timeout_s * 1000:g} ms")
    if notes:
        row["note"] = "; ".join(notes)
    if result.get("error"):
        row["error"] = result["error"]
    return row


class _WarrenMembers:
    """ManagerCluster as a `Cluster` for `trial` (members addressed by their API address)."""

    def __init__(self, cluster: ManagerCluster) -> None:
        self.cluster = cluster
        self.members = [_Manager(m) for m in cluster.managers]

    def wait_stable(self) -> _Manager:
        leader = self.cluster.wait_stable()
        return next(m for m in self.members if m.proc is leader)

    def recover(self, member: _Manager) -> None:
        self.cluster.recover(member.proc)


class _Manager:
    def __init__(self, proc: Any) -> None:
        self.proc = proc
        self.name = proc.name
        self.addr = proc.api_addr

    def kill(self) -> None:
        self.proc.kill()


def run(base_dir: Path, params: ClientFailoverParams) -> dict[str, Any]:
    loadavg_before = os.getloadavg()
    with ManagerCluster(base_dir / "client-failover") as cluster:
        try:
            cluster.start(MANAGERS)
        except HarnessError as exc:
            result: dict[str, Any] = {"summary": summarize([], params), "trials": [], "error": str(exc)}
        else:
            result = run_trials(_WarrenMembers(cluster), service_write("f-"), created, params)
    result["loadavg"] = {"before": loadavg_before, "after": os.getloadavg()}
    what = f"Warren API, {MANAGERS} managers, default Raft timers (election timeout 150-300 ms)"
    row = failover_row("client_failover", f"client_failover/{MANAGERS}", what, result, params)
    return {
        "status": "ok" if result["error"] is None else "error",
        "error": result["error"],
        "config": {"managers": MANAGERS, **params.as_dict()},
        "results": result,
        "rows": [row],
    }
