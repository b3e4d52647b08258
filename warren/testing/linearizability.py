"""Is a history of register operations linearizable? A checker in the manner of Porcupine and Knossos.

A history is a list of `Operation`s: who (client), which register (key), what (kind, input), what came
back (output), and when (invoke, complete on one monotonic clock). An operation whose outcome is not
known (a timeout, a dropped connection, a 503 after the request was sent) has `complete=None`: it may
take effect at any moment after its invoke, or never. An operation that certainly did not take effect
(the connection was refused) is simply left out of the history.

`check(history, model)` answers "ok", "illegal" or "unknown" (the search ran out of its step budget):

- P-compositionality: a history of independent registers is linearizable iff each register's
  sub-history is, so each key is checked on its own (Herlihy & Wing's locality; Horn & Kroening).
- Per key, Wing & Gong's search with Lowe's memoisation, as Porcupine does it: call and return events
  in time order in a linked list; the search linearizes any pending call that comes before the first
  return, lifting its call and return out of the list, and backtracks when it meets a return whose
  call could not be linearized; a configuration (linearized set as a bitset, model state) seen before
  is never explored again. Model states are sets of states (Porcupine's power-set model), so a model
  may be non-deterministic (the versioned register is, after a write of unknown outcome).
- An operation of unknown outcome never has to be linearized: the search succeeds once every
  completed one is (the rest go at the end, where any step of theirs is legal). Two sound prunings keep
  many of them from multiplying the search: one is not linearized where its step changes nothing (it
  could equally go at the end), and no operation is linearized right after one of unknown outcome
  whose effect it undoes (e.g. a write after a timed-out write: the same configuration without the
  timed-out one is explored anyway, with it still free to go later).
- When a key is illegal, `shrink` finds the shortest illegal sub-history it can: the smallest prefix
  (in real time, with operations still running at the cut made unknown) that is already illegal, then
  without the reads and failed compare-and-sets that are not needed to keep it illegal (dropping an
  operation that changes nothing never makes a legal history illegal, so what is left is a true
  witness). `Result.explain()` prints it: client, operation, times, values.

Models: `Register` (read / write / cas on plain values, the textbook one) and `VersionedRegister`
(Warren's services: every write gets a new version, reads return (version, value), writes are
compare-and-set on the version read: If-Match).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Protocol

from warren.config import CheckerSettings

Verdict = Literal["ok", "illegal", "unknown"]
State = Hashable

# The output of a compare-and-set of the versioned register that found another version (HTTP 409).
CONFLICT = ("conflict",)


@dataclass(frozen=True, slots=True)
class Operation:
    """One operation of a history. `output` is None (and ignored) when `complete` is None: unknown."""

    client: str
    key: str
    kind: str
    input: Any
    output: Any
    invoke: float
    complete: float | None = None
    # Free text shown beside the operation in a report (where it was sent, the error seen...).
    note: str = ""

    @property
    def unknown(self) -> bool:
        return self.complete is None


class Model(Protocol):
    """A register's sequential specification.

    `step` returns the states the register may be in after `op` (its output checked against `state`),
    an empty tuple when `op` could not have returned what it did. For an operation of unknown outcome
    (`op.complete is None`) it must never return an empty tuple: whether it took effect or not is legal.
    `changes` says whether `op` may change the state at all (reads and failed compare-and-sets do not):
    only operations that never change it are dropped when a failing history is shrunk. `prepare` may
    narrow one key's operations before the search (what the model's values prove about operations of
    unknown outcome), never admitting a history the register could not have produced.
    """

    def init(self, key: str) -> State: ...
    def step(self, state: State, op: Operation) -> tuple[State, ...]: ...
    def changes(self, op: Operation) -> bool: ...
    def describe(self, op: Operation) -> str: ...
    def prepare(self, ops: Sequence[Operation]) -> list[Operation]: ...


# -- models -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Register:
    """A plain register: `read` -> value; `write` (input: value); `cas` (input: (expected, new)) ->
    True if the value was `expected` (and is now `new`), False otherwise."""

    initial: Any = None

    def init(self, key: str) -> State:
        return self.initial  # type: ignore[no-any-return]

    def step(self, state: State, op: Operation) -> tuple[State, ...]:
        kind = op.kind
        if kind == "read":
            return (state,) if op.unknown or op.output == state else ()
        if kind == "write":
            return (op.input,)
        if kind == "cas":
            expected, new = op.input
            if op.unknown:
                return (new,) if state == expected else (state,)
            if op.output:
                return (new,) if state == expected else ()
            return (state,) if state != expected else ()
        raise ValueError(f"Register has no operation {kind!r}")

    def changes(self, op: Operation) -> bool:
        return op.kind == "write" or (op.kind == "cas" and (op.unknown or bool(op.output)))

    def prepare(self, ops: Sequence[Operation]) -> list[Operation]:
        return list(ops)

    def describe(self, op: Operation) -> str:
        if op.kind == "read":
            what = "read()"
        elif op.kind == "write":
            what = f"write({op.input!r})"
        else:
            what = f"cas({op.input[0]!r} -> {op.input[1]!r})"
        return f"{what} -> {'?' if op.unknown else repr(op.output)}"


@dataclass(frozen=True)
class VersionedRegister:
    """Warren's register: a value with a version that every write raises (a service and its labels).

    `read` -> (version, value); `cas` (input: (if_version, value)) -> ("ok", new version) or CONFLICT;
    `write` (input: value, no precondition) -> ("ok", new version). `initial` maps a key to its
    (version, value) when the history starts (default (0, None)).

    After a write of unknown outcome took effect, the new version is not known, only that it is above
    the one before: the state is then (lower bound, False, value) until a read or a successful
    compare-and-set names the version. This needs every write to write a value no other write does (the
    workload's are unique), so that a value identifies its write. While the version is unknown, a
    compare-and-set that conflicted is always legal, and one of unknown outcome may or may not match.
    """

    initial: Mapping[str, tuple[int, Any]] = field(default_factory=dict)

    def init(self, key: str) -> State:
        version, value = self.initial.get(key, (0, None))
        return (version, True, value)

    def step(self, state: State, op: Operation) -> tuple[State, ...]:
        version: int
        exact: bool
        value: Any
        version, exact, value = state  # type: ignore[misc]
        kind = op.kind
        if kind == "read":
            if op.unknown:
                return (state,)
            seen_version, seen_value = op.output
            if seen_value != value:
                return ()
            if exact:
                return (state,) if seen_version == version else ()
            return ((seen_version, True, value),) if seen_version > version else ()
        if kind == "cas":
            if_version, new = op.input
            if op.unknown:
                if exact:
                    return ((version, False, new),) if if_version == version else (state,)
                if if_version > version:  # may be the unknown version or not
                    return (state, (if_version, False, new))
                return (state,)
            if op.output == CONFLICT:
                return (state,) if (not exact or if_version != version) else ()
            _, new_version = op.output
            matches = if_version == version if exact else if_version > version
            return ((new_version, True, new),) if matches and new_version > if_version else ()
        if kind == "write":
            if op.unknown:
                return ((version, False, op.input),)
            _, new_version = op.output
            return ((new_version, True, op.input),) if new_version > version else ()
        raise ValueError(f"VersionedRegister has no operation {kind!r}")

    def changes(self, op: Operation) -> bool:
        return op.kind == "write" or (op.kind == "cas" and (op.unknown or op.output != CONFLICT))

    def prepare(self, ops: Sequence[Operation]) -> list[Operation]:
        """One key's compare-and-sets of unknown outcome narrowed by what the answers prove, so that
        each is pending in the search only where it could have taken effect (without this, every
        timed-out compare-and-set of a long run stays pending to its end and the search multiplies).

        Only for histories of compare-and-sets and reads whose written values are unique and whose
        compare-and-sets name a version some answer named (or the initial one), as the workload's
        are; any other history is returned as it is. Then:
        - one whose value an answered read returned took effect, with that version, before that read
          completed: it becomes an answered one, completing when the first such read did;
        - one whose value nobody read back could only have taken effect after every answered read and
          compare-and-set: once it did, the register held its value at a version nobody could name,
          so a later read would have returned the value and a later compare-and-set would have needed
          the version. It is invoked, for the search, no earlier than the last of those was.
        """
        if any(op.kind == "write" for op in ops):
            return list(ops)
        known = {version for version, _ in self.initial.values()} | {0}
        values: list[Any] = []
        observed: dict[Any, tuple[int, float]] = {}  # value -> (its version, first completion of a read)
        for op in ops:
            if op.unknown:
                if op.kind == "cas":
                    values.append(op.input[1])
                continue
            if op.kind == "read":
                version, value = op.output
                known.add(version)
                first = observed.get(value)
                if first is None or op.complete < first[1]:  # type: ignore[operator]
                    observed[value] = (version, op.complete)  # type: ignore[assignment]
            elif op.kind == "cas":
                values.append(op.input[1])
                if op.output != CONFLICT:
                    known.add(op.output[1])
        if len(set(values)) != len(values) or any(
            op.kind == "cas" and op.input[0] not in known for op in ops
        ):
            return list(ops)
        last_answered = max(
            (op.invoke for op in ops if not op.unknown and (op.kind == "read" or op.output != CONFLICT)),
            default=-math.inf,
        )
        out = []
        for op in ops:
            if op.unknown and op.kind == "cas":
                seen = observed.get(op.input[1])
                if seen is not None:
                    version, when = seen
                    note = (op.note + "; " if op.note else "") + "outcome unknown, value read back"
                    op = replace(op, output=("ok", version), complete=max(when, op.invoke), note=note)
                elif last_answered > op.invoke:
                    op = replace(op, invoke=last_answered)
            out.append(op)
        return out

    def describe(self, op: Operation) -> str:
        if op.kind == "read":
            what = "read()"
            out = "?" if op.unknown else f"v{op.output[0]} {op.output[1]!r}"
        else:
            what = f"cas(if v{op.input[0]}, {op.input[1]!r})" if op.kind == "cas" else f"write({op.input!r})"
            if op.unknown:
                out = "?"
            elif op.output == CONFLICT:
                out = "conflict"
            else:
                out = f"ok v{op.output[1]}"
        return f"{what} -> {out}"


# -- results ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class KeyResult:
    """The verdict on one key's sub-history; for an illegal one, the shortest illegal sub-history found
    (`subhistory`, in invoke order) and the operation whose answer made it illegal (`culprit`)."""

    key: str
    verdict: Verdict
    operations: int
    steps: int
    subhistory: tuple[Operation, ...] = ()
    culprit: Operation | None = None


@dataclass(frozen=True)
class Result:
    verdict: Verdict
    keys: tuple[KeyResult, ...]
    describe: Callable[[Operation], str] = repr

    @property
    def ok(self) -> bool:
        return self.verdict == "ok"

    def explain(self, *, origin: float | None = None, limit: int | None = None) -> str:
        """A readable account: one line per key, and each illegal key's sub-history (times in seconds
        since `origin`, default the first invoke shown; at most `limit` lines per key, the last ones)."""
        lines = []
        for k in self.keys:
            lines.append(f"key {k.key}: {k.verdict} ({k.operations} operations, {k.steps} search steps)")
            if k.verdict == "illegal":
                lines.append(f"  shortest illegal sub-history found: {len(k.subhistory)} operations")
                lines.extend("  " + line for line in format_history(
                    k.subhistory, self.describe, origin=origin, limit=limit, mark=k.culprit))
        return "\n".join(lines)


def format_history(
    ops: Sequence[Operation],
    describe: Callable[[Operation], str] = repr,
    *,
    origin: float | None = None,
    limit: int | None = None,
    mark: Operation | None = None,
) -> list[str]:
    """One line per operation: client, times [invoke, complete], what it did and saw, its note."""
    if not ops:
        return []
    zero = min(op.invoke for op in ops) if origin is None else origin
    shown = list(ops) if limit is None or len(ops) <= limit else list(ops[-limit:])
    lines = [f"... {len(ops) - len(shown)} earlier operations"] if len(shown) < len(ops) else []
    width = max(len(op.client) for op in shown)
    for op in shown:
        end = "      ?" if op.complete is None else f"{op.complete - zero:7.3f}"
        flag = "  <-- cannot be explained" if op is mark else ""
        note = f"  ({op.note})" if op.note else ""
        lines.append(f"{op.client:<{width}}  [{op.invoke - zero:7.3f} .. {end}]  {describe(op)}{note}{flag}")
    return lines


# -- the check --------------------------------------------------------------------------------------


def check(history: Iterable[Operation], model: Model, settings: CheckerSettings | None = None) -> Result:
    """The verdict on `history` against `model`, key by key (see the module's docstring)."""
    settings = settings or CheckerSettings()
    settings.validate()
    by_key: dict[str, list[Operation]] = {}
    for op in history:
        if op.unknown and not model.changes(op):
            continue  # a read whose answer never came constrains nothing
        by_key.setdefault(op.key, []).append(op)
    results = []
    for key in sorted(by_key):
        ops = sorted(model.prepare(by_key[key]), key=lambda o: o.invoke)
        verdict, steps = search(ops, model, key, settings.max_steps)
        if verdict == "illegal":
            sub, culprit = shrink(ops, model, key, settings)
            results.append(KeyResult(key, verdict, len(ops), steps, tuple(sub), culprit))
        else:
            results.append(KeyResult(key, verdict, len(ops), steps))
    verdicts = {r.verdict for r in results}
    overall: Verdict = "illegal" if "illegal" in verdicts else "unknown" if "unknown" in verdicts else "ok"
    return Result(overall, tuple(results), model.describe)


def search(ops: Sequence[Operation], model: Model, key: str, max_steps: int) -> tuple[Verdict, int]:
    """Wing & Gong / Lowe on one key's operations: (verdict, model steps taken)."""
    n = len(ops)
    if n == 0:
        return "ok", 0
    events = []
    for i, op in enumerate(ops):
        events.append((op.invoke, 0, i))
        # A call sorts before a return at the same instant: the two operations count as concurrent.
        events.append((math.inf if op.complete is None else op.complete, 1, i))
    events.sort()
    size = 2 * n
    head = size  # sentinel before the first event
    nxt = list(range(1, size + 1)) + [0]
    nxt[size - 1] = -1
    prv = [head] + list(range(0, size - 1)) + [-1]
    is_call = [kind == 0 for _, kind, _ in events]
    op_of = [i for _, _, i in events]
    match = [0] * size  # a call event's return event
    call_at = [0] * n
    for pos, (_, kind, i) in enumerate(events):
        if kind == 0:
            call_at[i] = pos
        else:
            match[call_at[i]] = pos

    def lift(pos: int) -> None:
        ret = match[pos]
        nxt[prv[pos]] = nxt[pos]
        if nxt[pos] != -1:
            prv[nxt[pos]] = prv[pos]
        nxt[prv[ret]] = nxt[ret]
        if nxt[ret] != -1:
            prv[nxt[ret]] = prv[ret]

    def unlift(pos: int) -> None:
        ret = match[pos]
        nxt[prv[ret]] = ret
        if nxt[ret] != -1:
            prv[nxt[ret]] = ret
        nxt[prv[pos]] = pos
        if nxt[pos] != -1:
            prv[nxt[pos]] = pos

    unknown = [op.unknown for op in ops]
    remaining = sum(1 for u in unknown if not u)  # completed operations not yet linearized
    step = model.step
    states: frozenset[State] = frozenset((model.init(key),))
    linearized = 0
    stack: list[tuple[int, frozenset[State]]] = []
    seen: set[tuple[int, int, frozenset[State]]] = set()
    steps = 0
    entry = nxt[head]
    while remaining:
        if is_call[entry]:
            i = op_of[entry]
            steps += 1
            if steps > max_steps:
                return "unknown", steps
            op = ops[i]
            after = frozenset(s for state in states for s in step(state, op))
            if after and not (unknown[i] and after == states) and not (
                stack and unknown[op_of[stack[-1][0]]]
                and frozenset(s for state in stack[-1][1] for s in step(state, op)) == after
            ):
                bits = linearized | (1 << i)
                # The memo keeps only the bits past the first operation not linearized (ops are in
                # invoke order, so all before it are): small keys however long the history.
                low = ((~bits) & (bits + 1)).bit_length() - 1
                config = (low, bits >> low, after)
                if config not in seen:
                    seen.add(config)
                    stack.append((entry, states))
                    states, linearized = after, bits
                    if not unknown[i]:
                        remaining -= 1
                    lift(entry)
                    entry = nxt[head]
                    continue
            entry = nxt[entry]
        else:
            if not stack:
                return "illegal", steps
            entry, states = stack.pop()
            i = op_of[entry]
            linearized &= ~(1 << i)
            if not unknown[i]:
                remaining += 1
            unlift(entry)
            entry = nxt[entry]
    return "ok", steps


# -- shrinking an illegal history ------------------------------------------------------------------


def prefix(ops: Sequence[Operation], model: Model, cut: float) -> list[Operation]:
    """The history as it stood at time `cut`: operations invoked by then; those that had not completed
    become of unknown outcome (and are dropped if they could change nothing). Linearizability is
    closed under this prefix, so an illegal prefix proves the whole history illegal."""
    out = []
    for op in ops:
        if op.invoke > cut:
            continue
        if op.complete is not None and op.complete > cut:
            op = replace(op, output=None, complete=None)
            if not model.changes(op):
                continue
        out.append(op)
    return out


def shrink(
    ops: Sequence[Operation], model: Model, key: str, settings: CheckerSettings
) -> tuple[list[Operation], Operation | None]:
    """The shortest illegal sub-history found within the shrink budget, and its culprit (the operation
    completing last in the smallest illegal prefix), for an illegal `ops`."""

    def illegal(sub: Sequence[Operation]) -> bool:
        return search(sub, model, key, settings.max_steps)[0] == "illegal"

    # 1. The smallest illegal prefix: a binary search on the completion times.
    times = sorted({op.complete for op in ops if op.complete is not None})
    lo, hi = 0, len(times) - 1  # prefix(times[hi]) is illegal (it is the whole history)
    checks = 0
    while lo < hi and checks < settings.shrink_checks:
        mid = (lo + hi) // 2
        checks += 1
        if illegal(prefix(ops, model, times[mid])):
            hi = mid
        else:
            lo = mid + 1
    cut = times[hi]
    sub = prefix(ops, model, cut)
    culprits = [op for op in sub if op.complete == cut]
    culprit = culprits[0] if culprits else None
    # 2. Without the operations that change nothing, all at once, then in halves (ddmin-like), kept out
    # whenever the rest stays illegal. The culprit stays.
    removable = [op for op in sub if not model.changes(op) and op not in culprits]
    chunk = len(removable)
    while chunk >= 1 and removable and checks < settings.shrink_checks:
        kept: list[Operation] = []
        for start in range(0, len(removable), chunk):
            part = removable[start:start + chunk]
            if checks >= settings.shrink_checks:
                kept.extend(part)
                continue
            drop = {id(op) for op in part}
            trial = [op for op in sub if id(op) not in drop]
            checks += 1
            if illegal(trial):
                sub = trial
            else:
                kept.extend(part)
        removable = kept
        chunk //= 2
    return sub, culprit
