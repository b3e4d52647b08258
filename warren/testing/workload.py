"""A compare-and-set workload over Warren's public API, recorded as a history the checker can judge.

A register is one label (`chaos.value`) of one service (`reg-0` ... `reg-N`, made by `setup`, with no
replicas). Concurrent clients, each a thread with a `ManagerClient` per manager, do three things:

    read             GET the service (a manager's local state: may be stale by design)
    read_consistent  GET ...?consistent=true (through the leader's read barrier: must be linearizable)
    cas              a consistent read of the version, then PATCH the label with `If-Match: <version>`
                     (the state machine checks the version when it applies the write: a 409 says the
                     write was refused, in the replicated order, and is a legal answer of the register)

Every request is sent once (no client-side retries: a retried write whose first attempt took effect
would come back 409 and look refused) and recorded with its invoke and complete times (one monotonic
clock), its client and its outcome:

    ok       the answer came (for a cas: the new version)
    failed   certainly not done: a 4xx (a cas's 409 is recorded with output CONFLICT and checked), or
             no manager was reached at all (warren.errors.UnreachableError: the request was never sent)
    unknown  anything after the request may have reached a manager: a timeout, a dropped connection, a
             503 (a follower's forward to the leader timed out, or the proposal did), a 5xx

After an error a client turns to the next manager and goes on: faults can be injected while it runs.

`History.check()` judges the consistent reads and the compare-and-sets (the failed ones that never
reached the register are left out; unknown ones may or may not have taken effect). Default reads are
not held to linearizability: `default_reads()` counts the stale ones (older than a version known to
exist when the read began) and lists phantoms (a value or version no write ever made), which are
failures. `acknowledged_writes_present(history, final)` checks that the state read at the end is one a
linearization of the history allows: no acknowledged write lost.
"""

from __future__ import annotations

import bisect
import itertools
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from warren.client import ManagerClient
from warren.config import CheckerSettings, ClientSettings, WorkloadSettings
from warren.errors import (
    ConflictError,
    ForbiddenError,
    InvalidError,
    NotFoundError,
    UnauthorizedError,
    UnavailableError,
    UnreachableError,
    WarrenError,
)
from warren.pki.userconfig import ClientCredentials
from warren.testing.linearizability import CONFLICT, Operation, Result, VersionedRegister, check

Kind = Literal["read", "read_consistent", "cas"]
Outcome = Literal["ok", "failed", "unknown"]
# The kinds held to linearizability.
CHECKED: tuple[Kind, ...] = ("read_consistent", "cas")
INITIAL_VALUE = "init"


@dataclass(frozen=True, slots=True)
class Record:
    """One operation as the workload saw it. `output`: a read's (version, value); a cas's ("ok", new
    version) or CONFLICT; None when no answer said. `complete` is when the answer or the error came."""

    client: str
    register: str
    kind: Kind
    input: Any
    output: Any
    invoke: float
    complete: float
    outcome: Outcome
    manager: str
    error: str = ""

    def operation(self) -> Operation | None:
        """The operation the checker sees: None for one that certainly did not happen."""
        if self.outcome == "failed" and self.output is None:
            return None
        known = self.outcome != "unknown"
        note = self.manager + (f": {self.error}" if self.error else "")
        kind = "read" if self.kind in ("read", "read_consistent") else self.kind
        return Operation(self.client, self.register, kind, self.input, self.output if known else None,
                         self.invoke, self.complete if known else None, note)


@dataclass(frozen=True)
class History:
    """What a run did: its records in invoke order, each register's (version, value) when the clients
    started, the seed, and the clock's reading at the start (`origin`, for printing times)."""

    records: tuple[Record, ...]
    initial: Mapping[str, tuple[int, Any]]
    seed: int
    origin: float

    def model(self) -> VersionedRegister:
        return VersionedRegister(initial=dict(self.initial))

    def operations(self, kinds: Sequence[Kind] = CHECKED) -> list[Operation]:
        ops = (r.operation() for r in self.records if r.kind in kinds)
        return [op for op in ops if op is not None]

    def check(self, settings: CheckerSettings | None = None) -> Result:
        """The linearizability verdict on the consistent reads and compare-and-sets."""
        return check(self.operations(), self.model(), settings)

    def counts(self) -> Counter[tuple[Kind, Outcome]]:
        return Counter((r.kind, r.outcome) for r in self.records)

    def conflicts(self) -> int:
        return sum(1 for r in self.records if r.kind == "cas" and r.output == CONFLICT)

    def summary(self) -> str:
        counts = self.counts()
        parts = [f"{kind} {'/'.join(str(counts[kind, o]) for o in ('ok', 'failed', 'unknown'))}"
                 for kind in ("read", "read_consistent", "cas")]
        return (f"seed {self.seed}: {len(self.records)} operations (ok/failed/unknown): " + ", ".join(parts)
                + f"; {self.conflicts()} cas conflicts")


# -- the run ----------------------------------------------------------------------------------------


def register_names(settings: WorkloadSettings) -> list[str]:
    return [f"{settings.service_prefix}{i}" for i in range(settings.registers)]


def run(
    managers: Sequence[str],
    credentials: ClientCredentials,
    *,
    seed: int,
    duration_s: float | None = None,
    operations: int | None = None,
    settings: WorkloadSettings | None = None,
    clock: Callable[[], float] = time.monotonic,
    stop: threading.Event | None = None,
) -> History:
    """Set the registers up (see `setup`), then run the clients until `duration_s` has passed or
    `operations` client steps were started (a cas step is a consistent read, then the write), whichever
    comes first (at least one must be given), or `stop` is set; the history. `seed` fixes each client's
    choices (what it does, on which register, through which manager first); the cluster's timing does
    the rest."""
    settings = settings or WorkloadSettings()
    settings.validate()
    if duration_s is None and operations is None:
        raise ValueError("run needs a duration_s or a number of operations")
    if not managers:
        raise ValueError("run needs at least one manager address")
    initial = setup(managers, credentials, settings)
    origin = clock()
    deadline = origin + duration_s if duration_s is not None else None
    tickets = _Tickets(operations)
    stopping = stop or threading.Event()
    logs: list[list[Record]] = [[] for _ in range(settings.clients)]

    def done() -> bool:
        return stopping.is_set() or (deadline is not None and clock() >= deadline) or not tickets.take()

    threads = [
        threading.Thread(
            target=_Client(i, managers, credentials, settings, seed, clock, logs[i]).run,
            args=(done, stopping), name=f"workload-c{i}", daemon=True,
        )
        for i in range(settings.clients)
    ]
    for t in threads:
        t.start()
    try:
        for t in threads:
            t.join()
    finally:
        stopping.set()
        for t in threads:
            t.join()
    records = sorted((r for log in logs for r in log), key=lambda r: r.invoke)
    return History(tuple(records), initial, seed, origin)


class _Tickets:
    """A shared count of operations still to start (None: no limit)."""

    def __init__(self, total: int | None) -> None:
        self._left = total
        self._lock = threading.Lock()

    def take(self) -> bool:
        with self._lock:
            if self._left is None:
                return True
            if self._left <= 0:
                return False
            self._left -= 1
            return True


class _Client:
    """One client: its own random stream (from the seed and its index), one connection per manager."""

    def __init__(self, index: int, managers: Sequence[str], credentials: ClientCredentials,
                 settings: WorkloadSettings, seed: int, clock: Callable[[], float],
                 log: list[Record]) -> None:
        self.name = f"c{index}"
        self.rng = random.Random(f"{seed}/{index}")
        self.managers = list(managers)
        self.current = self.rng.randrange(len(self.managers))
        self.credentials = credentials
        self.settings = settings
        self.registers = register_names(settings)
        self.clock = clock
        self.log = log
        self.written = 0

    def run(self, done: Callable[[], bool], stopping: threading.Event) -> None:
        s = self.settings
        weights = (s.default_read_weight, s.consistent_read_weight, s.cas_weight)
        once = ClientSettings(request_timeout_s=s.request_timeout_s, retry_deadline_s=0.0)
        clients = [ManagerClient(a, settings=once, credentials=self.credentials) for a in self.managers]
        try:
            while not done():
                register = self.rng.choice(self.registers)
                (kind,) = self.rng.choices(("read", "read_consistent", "cas"), weights)
                record = self.read(clients, register, consistent=kind != "read")
                if kind == "cas" and record.outcome == "ok":
                    record = self.cas(clients, register, record.output[0])
                if record.outcome != "ok" and record.output != CONFLICT:
                    self.current = (self.current + 1) % len(clients)
                    stopping.wait(s.error_pause_s)
        finally:
            for c in clients:
                c.close()

    def read(self, clients: Sequence[ManagerClient], register: str, *, consistent: bool) -> Record:
        client = clients[self.current]
        kind: Kind = "read_consistent" if consistent else "read"
        invoke = self.clock()
        try:
            service = client.get_service(register, consistent=consistent)
        except WarrenError as exc:
            return self._record(register, kind, None, None, invoke, _outcome(exc), str(exc))
        value = _label(service, self.settings.label)
        return self._record(register, kind, None, (service["version"], value), invoke, "ok")

    def cas(self, clients: Sequence[ManagerClient], register: str, version: int) -> Record:
        client = clients[self.current]
        self.written += 1
        value = f"{self.name}-{self.written}"
        invoke = self.clock()
        try:
            changes = {"labels": {self.settings.label: value}}
            service = client.update_service(register, changes, if_match=version)
        except ConflictError as exc:
            return self._record(register, "cas", (version, value), CONFLICT, invoke, "failed", str(exc))
        except WarrenError as exc:
            return self._record(register, "cas", (version, value), None, invoke, _outcome(exc), str(exc))
        return self._record(register, "cas", (version, value), ("ok", service["version"]), invoke, "ok")

    def _record(self, register: str, kind: Kind, input: Any, output: Any, invoke: float, outcome: Outcome,
                error: str = "") -> Record:
        record = Record(self.name, register, kind, input, output, invoke, self.clock(), outcome,
                        self.managers[self.current], error)
        self.log.append(record)
        return record


def _label(service: Mapping[str, Any], label: str) -> Any:
    return (service.get("spec") or {}).get("labels", {}).get(label)


def _outcome(exc: WarrenError) -> Outcome:
    """Whether an error proves the request did nothing: only an answer that refused it (4xx) or a
    request that never reached a manager. Anything else may have changed the state: unknown."""
    if isinstance(exc, UnreachableError):
        return "failed"
    if isinstance(exc, UnavailableError):
        return "unknown"  # a timeout, a dropped connection, a 503 (a forward or a proposal timed out)
    if isinstance(exc, ConflictError | NotFoundError | InvalidError | UnauthorizedError | ForbiddenError):
        return "failed"
    return "unknown"  # a 500, an answer that was not JSON...


# -- before and after -------------------------------------------------------------------------------


def _patient(managers: Sequence[str], credentials: ClientCredentials,
             settings: WorkloadSettings) -> ManagerClient:
    """A client that retries across every manager for up to setup_timeout_s (setting up, reading back)."""
    retrying = ClientSettings(request_timeout_s=settings.request_timeout_s,
                              retry_deadline_s=settings.setup_timeout_s)
    return ManagerClient(",".join(managers), settings=retrying, credentials=credentials)


def setup(managers: Sequence[str], credentials: ClientCredentials,
          settings: WorkloadSettings) -> dict[str, tuple[int, Any]]:
    """Create the registers' services that do not exist yet (value INITIAL_VALUE, no replicas), and
    read every register back consistently: {service name: (version, value)}."""
    with _patient(managers, credentials, settings) as client:
        for name in register_names(settings):
            try:
                client.get_service(name, consistent=True)
                continue
            except NotFoundError:
                pass
            spec = {"name": name, "image": settings.service_image, "replicas": 0,
                    "labels": {settings.label: INITIAL_VALUE}}
            try:
                client.create_service(spec)
            except ConflictError:
                pass  # made meanwhile (by a first attempt whose answer was lost, or another run)
    return final_state(managers, credentials, settings)


def final_state(managers: Sequence[str], credentials: ClientCredentials,
                settings: WorkloadSettings) -> dict[str, tuple[int, Any]]:
    """Every register's (version, value), read with ?consistent=true."""
    out = {}
    with _patient(managers, credentials, settings) as client:
        for name in register_names(settings):
            service = client.get_service(name, consistent=True)
            out[name] = (service["version"], _label(service, settings.label))
    return out


@dataclass(frozen=True)
class DefaultReads:
    """Default (local) reads: how many answered, how many were stale (older than a version known to
    exist when they began: by design, counted, not a failure), and the phantoms (a value or version no
    write made: a failure)."""

    answered: int
    stale: int
    phantoms: tuple[Record, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        return not self.phantoms


def default_reads(history: History) -> DefaultReads:
    # register -> value -> the version its write made (None: a write of unknown outcome, version unknown)
    written: dict[str, dict[Any, int | None]] = {k: {v: n} for k, (n, v) in history.initial.items()}
    known: dict[str, list[tuple[float, int]]] = {k: [] for k in history.initial}  # (when, version)
    for r in history.records:
        if r.kind == "cas" and r.outcome != "failed":
            version = r.output[1] if r.outcome == "ok" else None
            written.setdefault(r.register, {})[r.input[1]] = version
        if r.outcome == "ok" and r.kind != "read":
            version = r.output[0] if r.kind == "read_consistent" else r.output[1]
            known.setdefault(r.register, []).append((r.complete, version))
    # Per register: completion times in order, and the highest version known by each of them, so "the
    # newest version known before this read began" is one bisection (a 30-minute chaos history holds
    # tens of thousands of reads: a scan per read was quadratic).
    newest: dict[str, tuple[list[float], list[int]]] = {}
    for register, seen in known.items():
        seen.sort()
        highest = list(itertools.accumulate((v for _, v in seen), max))
        newest[register] = ([when for when, _ in seen], highest)
    answered = stale = 0
    phantoms = []
    for r in history.records:
        if r.kind != "read" or r.outcome != "ok":
            continue
        answered += 1
        version, value = r.output
        made = written.get(r.register, {})
        if value not in made or made[value] not in (None, version):
            phantoms.append(r)
            continue
        times, highest = newest.get(r.register, ([], []))
        before = bisect.bisect_left(times, r.invoke)  # known strictly before the read began
        if before and highest[before - 1] > version:
            stale += 1
    return DefaultReads(answered, stale, tuple(phantoms))


@dataclass(frozen=True)
class WritesPresent:
    """Whether the final state is one a linearization of the history allows (`result`), and, per
    register, the last acknowledged write's (version, value) beside the final one."""

    result: Result
    last_acknowledged: Mapping[str, tuple[int, Any] | None]
    final: Mapping[str, tuple[int, Any]]

    @property
    def ok(self) -> bool:
        return self.result.ok and all(
            ack is None or self.final[k][0] >= ack[0] for k, ack in self.last_acknowledged.items()
        )


def acknowledged_writes_present(history: History, final: Mapping[str, tuple[int, Any]],
                                settings: CheckerSettings | None = None) -> WritesPresent:
    """The history, ended by a consistent read of each register returning `final` (invoked after every
    recorded operation completed), checked for linearizability: it passes only if the final values
    are explained, so an acknowledged write that vanished (or a value nobody wrote) fails it."""
    end = max((r.complete for r in history.records), default=history.origin) + 1.0
    reads = [Operation("final", key, "read", None, state, end, end + 1.0, "final state")
             for key, state in final.items()]
    last: dict[str, tuple[int, Any] | None] = {key: None for key in final}
    for r in history.records:
        if r.kind == "cas" and r.outcome == "ok":
            prior = last.get(r.register)
            if prior is None or r.output[1] > prior[0]:
                last[r.register] = (r.output[1], r.input[1])
    result = check(history.operations() + reads, history.model(), settings)
    return WritesPresent(result, last, dict(final))
