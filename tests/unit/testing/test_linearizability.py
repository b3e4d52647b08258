"""warren.testing.linearizability: hand-made histories that are and are not linearizable, and a large
random one made from a real sequential execution (with one read corrupted, it must fail)."""

from __future__ import annotations

import random
from typing import Any

import pytest

from warren.config import CheckerSettings
from warren.errors import ConfigError
from warren.testing.linearizability import (
    CONFLICT,
    Operation,
    Register,
    VersionedRegister,
    check,
    prefix,
)

REG = Register(initial=0)


def op(client: str, kind: str, input: Any, output: Any, invoke: float, complete: float | None,
       key: str = "x") -> Operation:
    return Operation(client, key, kind, input, output, invoke, complete)


def r(client: str, value: Any, invoke: float, complete: float | None, key: str = "x") -> Operation:
    return op(client, "read", None, value, invoke, complete, key)


def w(client: str, value: Any, invoke: float, complete: float | None, key: str = "x") -> Operation:
    return op(client, "write", value, None, invoke, complete, key)


def cas(client: str, expected: Any, new: Any, ok: bool | None, invoke: float, complete: float | None,
        key: str = "x") -> Operation:
    return op(client, "cas", (expected, new), ok, invoke, complete, key)


# -- plain register ---------------------------------------------------------------------------------


def test_a_read_concurrent_with_a_write_may_see_either_value() -> None:
    write = w("a", 1, 0.0, 10.0)
    assert check([write, r("b", 1, 1.0, 2.0)], REG).verdict == "ok"
    assert check([write, r("b", 0, 1.0, 2.0)], REG).verdict == "ok"
    # ... both, in the order the write could have happened (old, then new) ...
    assert check([write, r("b", 0, 1.0, 2.0), r("c", 1, 3.0, 4.0)], REG).verdict == "ok"
    # ... but not new, then old: the write cannot be undone.
    result = check([write, r("b", 1, 1.0, 2.0), r("c", 0, 3.0, 4.0)], REG)
    assert result.verdict == "illegal"
    # and never a value nobody wrote.
    assert check([write, r("b", 2, 1.0, 2.0)], REG).verdict == "illegal"


def test_the_classic_stale_read_is_illegal_and_reported_as_the_culprit() -> None:
    history = [w("a", 1, 0.0, 1.0), r("b", 1, 1.5, 2.0), r("c", 0, 3.0, 4.0)]
    result = check(history, REG)
    assert result.verdict == "illegal" and not result.ok
    (key,) = result.keys
    assert key.culprit == history[2]
    assert history[2] in key.subhistory and history[0] in key.subhistory
    # b's read is not needed to show it (a read after a completed write returning the old value).
    assert history[1] not in key.subhistory
    text = result.explain(origin=0.0)
    assert "key x: illegal" in text
    assert "c  [  3.000 ..   4.000]  read() -> 0  <-- cannot be explained" in text, text
    assert "a  [  0.000 ..   1.000]  write(1) -> None" in text, text


def test_a_lost_update_two_cas_from_the_same_value_both_succeeding_is_illegal() -> None:
    both = [cas("a", 0, 1, True, 0.0, 2.0), cas("b", 0, 2, True, 1.0, 3.0)]
    assert check(both, REG).verdict == "illegal"
    one_fails = [cas("a", 0, 1, True, 0.0, 2.0), cas("b", 0, 2, False, 1.0, 3.0)]
    assert check(one_fails, REG).verdict == "ok"
    # A CAS that failed although nothing could have changed the value is illegal too.
    assert check([cas("a", 0, 1, False, 0.0, 1.0)], REG).verdict == "illegal"


def test_a_timed_out_write_may_or_may_not_take_effect_but_not_both() -> None:
    timed_out = w("a", 1, 0.0, None)
    assert check([timed_out, r("b", 1, 5.0, 6.0)], REG).verdict == "ok"  # it did
    assert check([timed_out, r("b", 0, 5.0, 6.0)], REG).verdict == "ok"  # not yet, or never
    assert check([timed_out, r("b", 0, 5.0, 6.0), r("c", 1, 7.0, 8.0)], REG).verdict == "ok"  # later
    assert check([timed_out, r("b", 1, 5.0, 6.0), r("c", 0, 7.0, 8.0)], REG).verdict == "illegal"
    # It cannot take effect before it was sent.
    assert check([r("b", 1, 0.0, 1.0), w("a", 1, 2.0, None)], REG).verdict == "illegal"


def test_operations_that_never_complete_need_not_be_linearized() -> None:
    # 30 writes that timed out, each of a value read by nobody, and reads of unknown outcome.
    history = [w(f"c{i}", 100 + i, float(i), None) for i in range(30)]
    history += [r("late", None, float(i), None) for i in range(30)]
    history += [w("a", 1, 40.0, 41.0), r("b", 1, 42.0, 43.0)]
    result = check(history, REG)
    assert result.verdict == "ok", result.explain()
    # One of them taking effect after a later completed write is fine too; two reads disagreeing are not.
    history += [r("b", 117, 44.0, 45.0), r("b", 1, 46.0, 47.0)]
    assert check(history, REG).verdict == "illegal"


def test_keys_are_checked_independently() -> None:
    # As one register this would be a stale read; as two it is fine.
    history = [w("a", 1, 0.0, 1.0, key="x"), r("b", 0, 2.0, 3.0, key="y")]
    result = check(history, REG)
    assert result.verdict == "ok"
    assert [(k.key, k.verdict, k.operations) for k in result.keys] == [("x", "ok", 1), ("y", "ok", 1)]
    # A failure on one key is reported on that key only.
    history += [w("a", 5, 4.0, 5.0, key="y"), r("b", 0, 6.0, 7.0, key="y")]
    result = check(history, REG)
    assert [(k.key, k.verdict) for k in result.keys] == [("x", "ok"), ("y", "illegal")]
    assert {o.key for o in result.keys[1].subhistory} == {"y"}


def test_the_budget_makes_the_verdict_unknown_rather_than_hang() -> None:
    history = [w(f"c{i}", i, 0.0, 100.0) for i in range(12)] + [r("z", 11, 101.0, 102.0)]
    assert check(history, REG).verdict == "ok"
    tight = check(history, REG, CheckerSettings(max_steps=5))
    assert tight.verdict == "unknown" and tight.keys[0].verdict == "unknown"
    with pytest.raises(ConfigError, match="max_steps"):
        check(history, REG, CheckerSettings(max_steps=0))


def test_prefix_makes_operations_running_at_the_cut_unknown() -> None:
    history = [w("a", 1, 0.0, 5.0), r("b", 1, 1.0, 6.0), r("c", 0, 2.0, 3.0), w("d", 2, 7.0, 8.0)]
    cut = prefix(history, REG, 4.0)
    assert [(o.client, o.unknown) for o in cut] == [("a", True), ("c", False)]  # b's read is dropped


# -- versioned register (Warren's services) ---------------------------------------------------------

VREG = VersionedRegister(initial={"x": (1, "init")})


def vread(client: str, version: int, value: str, invoke: float, complete: float | None) -> Operation:
    return op(client, "read", None, (version, value), invoke, complete)


def vcas(client: str, if_version: int, value: str, new_version: int | None, invoke: float,
         complete: float | None) -> Operation:
    output = None if complete is None else CONFLICT if new_version is None else ("ok", new_version)
    return op(client, "cas", (if_version, value), output, invoke, complete)


def test_versioned_lost_update_and_conflicts() -> None:
    lost = [vcas("a", 1, "a1", 5, 0.0, 2.0), vcas("b", 1, "b1", 6, 1.0, 3.0)]
    assert check(lost, VREG).verdict == "illegal"
    fine = [vcas("a", 1, "a1", 5, 0.0, 2.0), vcas("b", 1, "b1", None, 1.0, 3.0),
            vread("c", 5, "a1", 4.0, 5.0)]
    assert check(fine, VREG).verdict == "ok"
    # A version must grow: a write answered with a version at or below the one it replaced is illegal.
    assert check([vcas("a", 1, "a1", 1, 0.0, 1.0)], VREG).verdict == "illegal"
    # A conflict when the version read was current and nobody else wrote is illegal.
    refused = [vread("a", 1, "init", 0.0, 1.0), vcas("a", 1, "a1", None, 2.0, 3.0)]
    assert check(refused, VREG).verdict == "illegal"


def test_versioned_write_of_unknown_outcome_is_named_by_a_later_read() -> None:
    timed_out = vcas("a", 1, "a1", None, 0.0, None)
    ok = [timed_out, vread("b", 7, "a1", 3.0, 4.0), vcas("b", 7, "b1", 9, 5.0, 6.0),
          vread("c", 9, "b1", 7.0, 8.0)]
    assert check(ok, VREG).verdict == "ok"
    # Once a read named its version, another version of the same value is illegal ...
    renamed = [timed_out, vread("b", 7, "a1", 3.0, 4.0), vread("c", 8, "a1", 5.0, 6.0)]
    assert check(renamed, VREG).verdict == "illegal"
    # ... and so is a version that does not grow.
    assert check([timed_out, vread("b", 1, "a1", 3.0, 4.0)], VREG).verdict == "illegal"
    # Two writes of unknown outcome from unknown versions: each may or may not have matched.
    two = [timed_out, vcas("b", 4, "b1", None, 1.0, None), vread("c", 6, "b1", 5.0, 6.0)]
    assert check(two, VREG).verdict == "ok"


# -- a large random history from a real sequential execution ----------------------------------------


def random_history(seed: int, clients: int, ops_per_client: int, keys: int) -> list[Operation]:
    """Operations of a versioned register executed one after another (the linearization), each given
    invoke and complete times around its moment, overlapping its neighbours; some of unknown outcome."""
    rng = random.Random(seed)
    state = {f"k{k}": (1, "init") for k in range(keys)}
    version = 1
    busy_until = [0.0] * clients
    history = []
    total = clients * ops_per_client
    for n in range(total):
        t = float(n)
        client = rng.randrange(clients)
        key = f"k{rng.randrange(keys)}"
        invoke = max(t - rng.uniform(0, 3 * clients), busy_until[client])
        invoke = min(invoke, t)
        complete: float | None = t + rng.uniform(0, 3 * clients)
        busy_until[client] = complete or t
        current = state[key]
        roll = rng.random()
        if roll < 0.45:
            history.append(op(f"c{client}", "read", None, current, invoke, complete, key))
            continue
        if_version = current[0] if roll < 0.85 else current[0] - rng.randrange(1, 3)
        value = f"c{client}-{n}"
        if if_version == current[0]:
            version += 1
            state[key] = (version, value)
            output: Any = ("ok", version)
        else:
            output = CONFLICT
        if rng.random() < 0.02:  # its answer lost: took effect (or not), outcome unknown
            complete, output = None, None
        history.append(op(f"c{client}", "cas", (if_version, value), output, invoke, complete, key))
    return history


def test_a_random_history_from_a_sequential_execution_is_linearizable() -> None:
    history = random_history(1, clients=10, ops_per_client=200, keys=5)
    model = VersionedRegister(initial={f"k{k}": (1, "init") for k in range(5)})
    result = check(history, model)
    assert result.verdict == "ok", result.explain(limit=30)
    assert len(result.keys) == 5 and sum(k.operations for k in result.keys) > 1900


def test_the_same_history_with_one_read_corrupted_fails_and_names_the_read() -> None:
    history = random_history(2, clients=10, ops_per_client=200, keys=5)
    model = VersionedRegister(initial={f"k{k}": (1, "init") for k in range(5)})
    assert check(history, model).verdict == "ok"
    # A read in the middle returns what its key held 40 operations earlier on that key: stale.
    reads = [i for i, o in enumerate(history) if o.kind == "read" and o.complete is not None]
    index = reads[len(reads) // 2]
    bad = history[index]
    earlier = [o for o in history[:index] if o.key == bad.key and o.kind == "read" and o.complete is not None]
    stale = earlier[-40].output
    assert stale[0] < bad.output[0]
    corrupt = Operation(bad.client, bad.key, "read", None, stale, bad.invoke, bad.complete)
    tampered = history[:index] + [corrupt] + history[index + 1:]
    result = check(tampered, model)
    assert result.verdict == "illegal"
    (failed,) = [k for k in result.keys if k.verdict == "illegal"]
    assert failed.key == bad.key and failed.culprit == corrupt
    assert corrupt in failed.subhistory
    # Shorter than the key's history, and a witness on its own.
    assert len(failed.subhistory) < failed.operations
    assert check(failed.subhistory, model).verdict == "illegal"
    assert "<-- cannot be explained" in result.explain(limit=10)


# -- long runs: compare-and-sets of unknown outcome do not stay pending to the end ------------------


def workload_history(seed: int, ops: int, lost: float) -> list[Operation]:
    """One key, three clients each reading and then compare-and-setting on the version it read (as the
    workload does), one operation after another with overlaps; a `lost` share of the compare-and-sets
    time out without taking effect, their values never read back."""
    rng = random.Random(seed)
    version, value = 1, "init"
    seen = [(1, "init")] * 3
    history = []
    for n in range(ops):
        client = n % 3
        t = float(n)
        invoke, complete = t - rng.uniform(0, 2), t + rng.uniform(0, 2)
        if rng.random() < 0.4:
            seen[client] = (version, value)
            history.append(op(f"c{client}", "read", None, (version, value), invoke, complete))
            continue
        if_version, new = seen[client][0], f"c{client}-{n}"
        if rng.random() < lost:
            history.append(op(f"c{client}", "cas", (if_version, new), None, invoke, None))
        elif if_version == version:
            version, value = version + 1, new
            seen[client] = (version, value)
            history.append(op(f"c{client}", "cas", (if_version, new), ("ok", version), invoke, complete))
        else:
            history.append(op(f"c{client}", "cas", (if_version, new), CONFLICT, invoke, complete))
    return history


def test_a_long_history_with_timed_out_writes_is_decided_within_a_small_budget() -> None:
    # Before VersionedRegister.prepare, each timed-out compare-and-set stayed pending to the history's
    # end and was tried at every step: this history (about 600 of them) ran out of this budget.
    history = workload_history(3, ops=20_000, lost=0.05)
    result = check(history, VREG, CheckerSettings(max_steps=200_000))
    assert result.verdict == "ok", result.explain(limit=20)


def test_a_timed_out_write_read_back_must_have_happened_before_the_read() -> None:
    timed_out = vcas("a", 1, "a1", None, 5.0, None)
    # Read back after it was sent: it took effect, as version 7.
    assert check([timed_out, vread("b", 7, "a1", 6.0, 7.0)], VREG).verdict == "ok"
    # Read back by a read that completed before it was sent: no order explains it.
    assert check([timed_out, vread("b", 7, "a1", 1.0, 2.0)], VREG).verdict == "illegal"


def test_a_timed_out_write_nobody_read_may_still_explain_a_last_conflict() -> None:
    # a's write may have landed after b's read: c's conflict on the version b read is then legal.
    history = [vread("b", 1, "init", 0.0, 1.0), vcas("a", 1, "a1", None, 0.5, None),
               vcas("c", 1, "c1", None, 2.0, 3.0)]
    assert check(history, VREG).verdict == "ok"
    # ... but not one that a later answered read contradicts (the version cannot go back).
    later = [*history, vread("d", 1, "init", 4.0, 5.0)]
    assert check(later, VREG).verdict == "illegal"
