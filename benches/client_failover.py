"""The client's view of a failover, system-neutral: how long writes fail after the leader is disrupted.

A trial, on a formed cluster: a client thread writes continuously to the leader (unique writes, one
keep-alive connection); after a random lead-in the harness takes the time and disrupts the leader with
the trial's variant (SIGKILL, SIGSTOP, SIGTERM, a network cut: whatever the cluster adapter does for it).
Once the disruption is in effect (the process reaped, shown stopped, signalled; the rules in place) the
client drops its connection to the old leader, a write in flight included, and from then on sends each
write to the survivors in turn (round-robin), moving on at once on a connection error, a non-2xx answer
(503 while there is no leader) or no answer within `attempt_timeout_s`, and pausing `retry_pause_s` only
after a whole round failed. Failover is the time from the disruption to the first acknowledged write
that was sent after it. The adapter then undoes the disruption and waits until the victim is a member
again; the next trial starts from a stable cluster.

Connections are opened as the system's clients open them (`Member.http`): HTTPS with the cluster's
admin certificate for Warren, plain HTTP for etcd's JSON gateway. A connection is opened once and kept
(keep-alive); the first write to each survivor after the disruption opens its connection, TLS handshake
included, and that time counts in the failover as it would for a client.

Dropping the old leader's connection at the disruption is the same for every variant: after a SIGKILL
the kernel resets it anyway, while a frozen leader would hold the write until some timeout; the client
here knows at once, like one told by a health check. The attempt timeout still matters where a write to
a survivor can hang: a survivor that has not noticed the leader's failure yet forwards the write to it.

Used by benches/leader_failover.py (Warren: SIGKILL, SIGSTOP, graceful), benches/etcd_peer.py (the same
on etcd) and benches/partition.py (a cut leader).
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from benches.manager_api import Acked, MakeWrite
from benches.managers import HarnessError, Http, HttpError
from benches.stats import summarize_ms, trial_row

LEADER_TIMEOUT_S = 2.0  # before the disruption a slow write to the leader is not a failure; seconds


@dataclass(frozen=True)
class ClientParams:
    lead_in_s: tuple[float, float] = (0.2, 0.5)  # the client writes to the leader this long first; seconds
    min_writes_before: int = 5  # acknowledged writes to the leader before the disruption; writes
    attempt_timeout_s: float = 0.1  # a write with no answer by then is abandoned and retried; seconds
    retry_pause_s: float = 0.002  # pause after a whole round of survivors failed; seconds
    give_up_s: float = 15.0  # a trial with no acknowledged write by then is recorded as failed; seconds
    # After the first acknowledgement the client goes on writing until this long after the disruption,
    # so that a later stall shows in `unavailable_s` (the longest gap without one); seconds.
    observe_s: float = 2.0
    seed: int = 3  # for the lead-in times

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Member(Protocol):
    @property
    def label(self) -> str: ...

    @property
    def addr(self) -> str: ...  # where clients send writes ("host:port")

    def http(self, timeout_s: float) -> Http: ...  # a keep-alive connection as the system's clients open


class Cluster(Protocol):
    @property
    def members(self) -> Sequence[Member]: ...

    def wait_stable(self) -> Member: ...  # the leader once every live member agrees on it

    def disrupt(self, member: Member, variant: str) -> None: ...  # returns once the disruption is in effect

    def recover(self, member: Member, variant: str) -> dict[str, Any]:
        """Undo the disruption, wait until `member` is a follower again; extra fields for the record."""
        ...


class Client(threading.Thread):
    """Writes to the leader until `leave_leader()`, then round-robin to the survivors until one acks."""

    def __init__(
        self,
        leader: Member,
        survivors: Sequence[Member],
        make: MakeWrite,
        acked: Acked,
        params: ClientParams,
        first: int,
    ) -> None:
        super().__init__(name="failover-client", daemon=True)
        self.survivors = survivors
        self.make = make
        self.acked = acked
        self.params = params
        self.n = first
        self.disrupted_t: float | None = None  # perf_counter() just before the disruption, set by the harness
        self.left = threading.Event()  # the disruption is in effect: stop writing to the leader
        self.stop = threading.Event()
        self._leader = leader.http(LEADER_TIMEOUT_S)
        self.acks_before = 0
        self.leader_errors_before: list[str] = []
        self.ack_t: float | None = None  # the first acknowledgement after the disruption
        self.acks: list[float] = []  # every acknowledgement after the disruption
        self.failed_after_first = 0
        self.winner: str | None = None
        self.outcomes: Counter[str] = Counter()
        self.first_errors: list[str] = []
        self.attempts = 0

    def leave_leader(self) -> None:
        """From the harness: the client abandons the leader, a write in flight included."""
        self.left.set()  # before abort(): a client that opened its socket after abort() sees `left`
        self._leader.abort()

    def run(self) -> None:
        conn = self._leader
        try:
            while not self.stop.is_set() and not self.left.is_set():
                try:
                    conn.connect()  # the socket exists before `left` is checked: abort() reaches it
                except HttpError as exc:
                    self._before_error(str(exc))
                    continue
                if self.left.is_set():
                    break
                method, path, body = self.make(self.n)
                self.n += 1
                try:
                    status, data = conn.request(method, path, body)
                except HttpError as exc:
                    self._before_error(str(exc))
                    continue
                if self.acked(status, data) and self.disrupted_t is None:
                    self.acks_before += 1
        finally:
            conn.close()
        if not self.stop.is_set():
            self._until_acked()

    def _before_error(self, text: str) -> None:
        if self.disrupted_t is None:  # not the disruption: note it (the trial is then not clean)
            self.leader_errors_before.append(text)
        time.sleep(0.001)  # failing: wait for the harness to say whether this is the disruption

    def _until_acked(self) -> None:
        """Round-robin on the survivors until the first acknowledgement, then on until `observe_s` after
        the disruption (every acknowledgement's time in `acks`, for the longest gap)."""
        assert self.disrupted_t is not None
        conns = [m.http(self.params.attempt_timeout_s) for m in self.survivors]
        give_up = self.disrupted_t + self.params.give_up_s
        observe_until = self.disrupted_t + self.params.observe_s
        try:
            i = 0
            failed_in_round = 0
            while not self.stop.is_set():
                now = time.perf_counter()
                if now >= (give_up if self.ack_t is None else observe_until):
                    return
                conn = conns[i % len(conns)]
                i += 1
                method, path, body = self.make(self.n)
                self.n += 1
                if self.ack_t is None:
                    self.attempts += 1
                try:
                    status, data = conn.request(method, path, body)
                except HttpError as exc:
                    kind = "timeout" if "timed out" in str(exc) else "connection error"
                    self._failed(kind, str(exc))
                else:
                    if self.acked(status, data):
                        self.acks.append(time.perf_counter())
                        failed_in_round = 0
                        if self.ack_t is None:
                            self.ack_t = self.acks[0]
                            self.winner = conn.addr
                            self.outcomes["acked"] += 1
                        continue
                    self._failed(f"HTTP {status}", f"{conn.addr}: HTTP {status}: {data[:160]!r}")
                failed_in_round += 1
                if failed_in_round >= len(conns):
                    failed_in_round = 0
                    time.sleep(self.params.retry_pause_s)
        finally:
            for c in conns:
                c.close()

    def _failed(self, kind: str, text: str) -> None:
        if self.ack_t is not None:
            self.failed_after_first += 1
            return
        self.outcomes[kind] += 1
        if len(self.first_errors) < 4:
            self.first_errors.append(text)


def longest_gap(acks: Sequence[float], start: float, end: float) -> tuple[float, float]:
    """The longest stretch of [start, end] without an acknowledgement (between consecutive ones, or
    between an edge and the nearest one; the whole window when there is none): (length, where it began)."""
    points = [start, *sorted(t for t in acks if start < t < end), end]
    length, began = max((b - a, a) for a, b in zip(points, points[1:], strict=False))
    return length, began


def trial(
    cluster: Cluster,
    variant: str,
    make: MakeWrite,
    acked: Acked,
    params: ClientParams,
    first: int,
    rng: random.Random,
) -> dict[str, Any]:
    """One disruption of the leader: the trial's record (`failover_s` None when no write was
    acknowledged in time) with the adapter's recovery fields; `next` is the next write number."""
    victim = cluster.wait_stable()
    survivors = [m for m in cluster.members if m is not victim]
    client = Client(victim, survivors, make, acked, params, first)
    lead_in = rng.uniform(*params.lead_in_s)
    effect = None
    disrupted_at = None
    client.start()
    try:
        t0 = time.perf_counter()
        deadline = t0 + lead_in + 10.0
        while (time.perf_counter() - t0 < lead_in or client.acks_before < params.min_writes_before) and (
            time.perf_counter() < deadline and client.is_alive()
        ):
            time.sleep(0.005)
        disrupted_at = time.time()  # wall clock, to find the moment in the members' logs
        client.disrupted_t = time.perf_counter()
        cluster.disrupt(victim, variant)  # nothing the victim does can count after this
        effect = time.perf_counter() - client.disrupted_t
        client.leave_leader()
        client.join(params.give_up_s + 5.0)
    finally:
        client.stop.set()
        client.leave_leader()
        client.join(5.0)
    failover = unavailable = None
    if client.ack_t is not None and client.disrupted_t is not None:
        failover = client.ack_t - client.disrupted_t
        end = max(client.ack_t, client.disrupted_t + params.observe_s)
        unavailable, _ = longest_gap(client.acks, client.disrupted_t, end)
    record: dict[str, Any] = {
        "variant": variant,
        "victim": victim.label,
        "lead_in_s": lead_in,
        "disrupted_at": disrupted_at,
        "acks_before": client.acks_before,
        "failover_s": failover,
        "unavailable_s": unavailable,  # the longest gap without an acknowledgement, from the disruption on
        "acks_observed": len(client.acks),
        "failed_after_first": client.failed_after_first,
        "in_effect_s": effect,  # the client tries the survivors from then on (within failover_s)
        "acked_by": client.winner,
        "attempts_after": client.attempts,
        "outcomes": dict(client.outcomes),
        "first_errors": client.first_errors,
        "next": client.n,
    }
    if client.leader_errors_before:
        record["leader_errors_before"] = client.leader_errors_before[:3]
    t_recover = time.perf_counter()
    record.update(cluster.recover(victim, variant))
    record["recover_s"] = time.perf_counter() - t_recover
    return record


def run_trials(
    cluster: Cluster,
    make: MakeWrite,
    acked: Acked,
    variants: Sequence[str],
    trials: int,
    params: ClientParams,
    max_wall_s: float,
) -> dict[str, Any]:
    """`trials` disruptions of each variant, interleaved (so drift and load touch every variant alike):
    {"trials": {variant: [record, ...]}, "error": what stopped them early, or None}."""
    rng = random.Random(params.seed)
    records: dict[str, list[dict[str, Any]]] = {v: [] for v in variants}
    error = None
    n = 0
    t_start = time.monotonic()
    try:
        for i in range(trials):
            for variant in variants:
                if time.monotonic() - t_start > max_wall_s:
                    done = sum(len(r) for r in records.values())
                    raise _OverBudget(f"stopped after {done} trials: over the {max_wall_s:g} s budget")
                record = trial(cluster, variant, make, acked, params, n, rng)
                n = record.pop("next")
                records[variant].append({"trial": i, **record})
    except HarnessError as exc:
        error = f"{type(exc).__name__}: {exc}"
    except _OverBudget as exc:
        error = str(exc)
    return {"trials": records, "error": error}


class _OverBudget(Exception):
    pass


def failover_row(
    scenario: str,
    key: str,
    what: str,
    event: str,
    records: list[dict[str, Any]],
    params: ClientParams,
    error: str | None = None,
) -> dict[str, Any]:
    """The report row of one variant's trials (stats.trial_row), with the client's counts noted."""
    seconds = [r["failover_s"] for r in records if r.get("failover_s") is not None]
    failures = [
        f"no acknowledged write within {params.give_up_s:g} s ({r['outcomes']})"
        for r in records
        if r.get("failover_s") is None
    ]
    row = trial_row(scenario, key, what, event, seconds, failures)
    timeouts = sum(r["outcomes"].get("timeout", 0) for r in records)
    unclean = sum(1 for r in records if r.get("leader_errors_before"))
    gaps = summarize_ms([r["unavailable_s"] for r in records if r.get("unavailable_s") is not None])
    row["unavailable_p50_ms"] = gaps.get("p50_ms")  # the longest gap (see trial()), next to failover
    row["unavailable_max_ms"] = gaps.get("max_ms")
    row["attempt_timeout_ms"] = 1000 * params.attempt_timeout_s
    row["abandoned_attempts"] = timeouts
    notes = [row["note"]] if "note" in row else []
    if unclean:
        notes.append(f"{unclean} trial(s) had failed writes to the leader before the disruption")
    if timeouts:
        notes.append(f"{timeouts} attempt(s) abandoned after {params.attempt_timeout_s * 1000:g} ms")
    if notes:
        row["note"] = "; ".join(notes)
    if error:
        row["error"] = error
    return row
