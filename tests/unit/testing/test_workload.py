"""warren.testing.workload without a cluster: which errors prove a request did nothing, what the
checker is given, and how default reads and the final state are judged."""

from __future__ import annotations

import random

import pytest

from warren.errors import (
    ConflictError,
    InvalidError,
    StorageError,
    UnavailableError,
    UnreachableError,
    WarrenError,
)
from warren.testing.linearizability import CONFLICT
from warren.testing.workload import History, Record, _outcome, acknowledged_writes_present, default_reads


@pytest.mark.parametrize(
    ("error", "outcome"),
    [
        (UnreachableError("refused"), "failed"),  # never sent
        (ConflictError("409"), "failed"),
        (InvalidError("400"), "failed"),
        (UnavailableError("timed out / dropped / 503"), "unknown"),  # may have been applied
        (StorageError("500"), "unknown"),
        (WarrenError("not JSON"), "unknown"),
    ],
)
def test_only_a_refusal_or_an_unsent_request_is_a_definite_failure(error: WarrenError, outcome: str) -> None:
    assert _outcome(error) == outcome


def rec(client: str, kind: str, input: object, output: object, invoke: float, complete: float,
        outcome: str = "ok") -> Record:
    return Record(client, "reg-0", kind, input, output, invoke, complete, outcome, "m1")  # type: ignore[arg-type]


HISTORY = History(
    records=(
        rec("a", "cas", (1, "a-1"), ("ok", 5), 0.0, 1.0),
        rec("b", "read", None, (1, "init"), 2.0, 2.1),  # stale: v5 was acknowledged at 1.0
        rec("b", "read", None, (5, "a-1"), 3.0, 3.1),
        rec("c", "cas", (5, "c-1"), None, 4.0, 4.5, "failed"),  # refused connection: never happened
        rec("c", "cas", (5, "c-2"), CONFLICT, 5.0, 5.5, "failed"),  # 409: checked
        rec("d", "cas", (5, "d-1"), None, 6.0, 9.0, "unknown"),
        rec("e", "read_consistent", None, (8, "d-1"), 10.0, 10.5),
    ),
    initial={"reg-0": (1, "init")},
    seed=0,
    origin=0.0,
)


def test_the_checker_sees_what_may_have_happened() -> None:
    ops = HISTORY.operations()
    assert [(o.client, o.kind, o.output, o.unknown) for o in ops] == [
        ("a", "cas", ("ok", 5), False),
        ("c", "cas", CONFLICT, False),
        ("d", "cas", None, True),
        ("e", "read", (8, "d-1"), False),
    ]
    assert HISTORY.check().verdict == "illegal"  # c's 409 came while v5 was current and d had not begun
    fine = History(HISTORY.records[:4] + HISTORY.records[5:], HISTORY.initial, 0, 0.0)
    assert fine.check().verdict == "ok"


def test_default_reads_stale_is_counted_a_phantom_fails() -> None:
    reads = default_reads(HISTORY)
    assert (reads.answered, reads.stale, reads.phantoms, reads.ok) == (2, 1, (), True)
    phantom = rec("f", "read", None, (6, "a-1"), 11.0, 11.1)  # a-1 was written as v5
    never = rec("f", "read", None, (9, "nobody"), 12.0, 12.1)
    bad = History(HISTORY.records + (phantom, never), HISTORY.initial, 0, 0.0)
    assert default_reads(bad).phantoms == (phantom, never)


def test_acknowledged_writes_present_explains_the_final_state() -> None:
    fine = History(HISTORY.records[:4] + HISTORY.records[5:], HISTORY.initial, 0, 0.0)
    assert acknowledged_writes_present(fine, {"reg-0": (8, "d-1")}).ok
    # The unknown write need not have happened, but then the consistent read of it cannot be explained.
    lost = acknowledged_writes_present(fine, {"reg-0": (5, "a-1")})
    assert not lost.ok and lost.last_acknowledged == {"reg-0": (5, "a-1")}
    assert not acknowledged_writes_present(fine, {"reg-0": (1, "init")}).ok


def test_stale_default_reads_counted_as_a_scan_would_on_a_random_history() -> None:
    # The count bisects per register (a 30-minute history is too long for a scan per read); it must
    # agree with the plain definition: a read is stale if a newer version was known before it began.
    rng = random.Random(7)
    records, version, t = [], 1, 0.0
    for i in range(3000):
        t += rng.random()
        done = t + rng.random() * 3
        if rng.random() < 0.3:
            version += 1
            records.append(rec(f"w{i}", "cas", (version - 1, f"v{version}"), ("ok", version), t, done))
        else:
            seen = max(1, version - rng.randrange(3))
            records.append(rec(f"r{i}", "read", None, (seen, "init" if seen == 1 else f"v{seen}"), t, done))
    records.sort(key=lambda r: r.invoke)
    history = History(tuple(records), {"reg-0": (1, "init")}, 0, 0.0)
    known = [(r.complete, r.output[1]) for r in records if r.kind == "cas"]
    expected = sum(
        1 for r in records if r.kind == "read" and any(w < r.invoke and v > r.output[0] for w, v in known)
    )
    reads = default_reads(history)
    assert expected > 100 and reads.stale == expected and reads.phantoms == ()
