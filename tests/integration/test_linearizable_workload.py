"""The compare-and-set workload (warren.testing.workload) against three real managers with no faults: its
history is linearizable, default reads are at worst stale, every acknowledged write is in the final
state; and the same history with one read tampered with (or a write lost) fails the checker."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator

import pytest

from tests.integration.managers import credentials, manager_clusters
from warren.config import WorkloadSettings
from warren.testing import workload
from warren.testing.workload import History, Record

SETTINGS = WorkloadSettings(clients=4, registers=3)
SEED = 19


@dataclasses.dataclass(frozen=True)
class Run:
    history: History
    final: dict[str, tuple[int, object]]
    seconds: float


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[Run]:
    with manager_clusters(tmp_path_factory.mktemp("linearizable"), request) as make:
        cluster = make()
        managers = cluster.form(3)
        cluster.leader()
        addrs = [m.api_addr for m in managers]
        creds = credentials(addrs[0])
        started = time.monotonic()
        history = workload.run(addrs, creds, seed=SEED, duration_s=3.0, settings=SETTINGS)
        seconds = time.monotonic() - started
        final = workload.final_state(addrs, creds, SETTINGS)
        yield Run(history, final, seconds)


def test_a_fault_free_run_is_linearizable_and_loses_no_write(run: Run) -> None:
    history = run.history
    counts = history.counts()
    summary = history.summary()
    print(f"{summary} in {run.seconds:.1f} s; {workload.default_reads(history)}")
    result = history.check()
    assert result.verdict == "ok", result.explain(origin=history.origin, limit=40)
    assert {k.key for k in result.keys} == set(workload.register_names(SETTINGS))
    # Enough happened to mean something: writes that took, writes refused by the version check (four
    # clients on three registers collide), consistent and default reads.
    assert counts["cas", "ok"] >= 30, summary
    assert history.conflicts() >= 1, summary
    assert counts["read_consistent", "ok"] >= 30 and counts["read", "ok"] >= 10, summary
    # Without faults nothing is left unknown, and the only refusals are conflicts.
    assert sum(n for (_, outcome), n in counts.items() if outcome == "unknown") == 0, summary
    assert counts["cas", "failed"] == history.conflicts(), summary
    assert counts["read", "failed"] == counts["read_consistent", "failed"] == 0, summary
    # Default reads are never phantoms (stale ones are allowed, and counted).
    reads = workload.default_reads(history)
    assert reads.ok and reads.answered == counts["read", "ok"], reads
    # The final state is the last acknowledged write of each register, and a linearization explains it.
    present = workload.acknowledged_writes_present(history, run.final)
    assert present.ok, present.result.explain(limit=20)
    for name, ack in present.last_acknowledged.items():
        assert ack is not None and run.final[name] == ack, (name, ack, run.final[name])


def stale_copy(history: History) -> tuple[History, Record]:
    """The history with one consistent read answered with an older acknowledged write's state: one a
    later write had replaced, acknowledged before the read began."""
    records = list(history.records)
    for index in range(len(records) // 2, len(records)):
        r = records[index]
        if r.kind != "read_consistent" or r.outcome != "ok":
            continue
        done = sorted(
            (w.output[1], w.input[1]) for w in records
            if w.register == r.register and w.kind == "cas" and w.outcome == "ok" and w.complete < r.invoke
        )
        if len(done) >= 2 and done[-2][0] < r.output[0]:
            tampered = dataclasses.replace(r, output=done[-2])
            records[index] = tampered
            return dataclasses.replace(history, records=tuple(records)), tampered
    raise AssertionError("no consistent read after two acknowledged writes of its register")


def test_the_same_history_with_a_tampered_read_is_not_linearizable(run: Run) -> None:
    tampered, bad = stale_copy(run.history)
    result = tampered.check()
    assert result.verdict == "illegal"
    (failed,) = [k for k in result.keys if k.verdict == "illegal"]
    assert failed.key == bad.register
    assert any(op.invoke == bad.invoke and op.client == bad.client for op in failed.subhistory)
    assert "<-- cannot be explained" in result.explain(origin=run.history.origin, limit=20)


def test_a_lost_write_is_caught(run: Run) -> None:
    # The final state of one register put back to the write before its last acknowledged one.
    name = workload.register_names(SETTINGS)[0]
    oks = sorted((r.output[1], r.input[1]) for r in run.history.records
                 if r.register == name and r.kind == "cas" and r.outcome == "ok")
    lost = {**run.final, name: oks[-2]}
    present = workload.acknowledged_writes_present(run.history, lost)
    assert not present.ok and present.result.verdict == "illegal"
