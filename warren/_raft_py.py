"""The state-machine bridge's hot code, one source for both paths: `drive` (work items from the Raft
core to the state machine) and `apply_entries` (a committed batch, each entry in its own savepoint).

This file is the pure-Python module `warren._raft_py`. `warren/_raft.py` is a symlink to it, and
setup.py compiles that name with Cython into `warren._raft`, typed by `warren/_raft.pxd` (Cython's
"augmenting .pxd": the .py stays plain Python, the .pxd adds C types to its hot functions), as aiohttp
does for its websocket reader. `warren.raft_bridge` picks the compiled module unless
WARREN_NO_EXTENSIONS is set or it is not built; `COMPILED` says which one this is.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import sqlite3

    from warren.raft_bridge import StateMachine, WorkSource

try:  # Cython replaces this with its compile-time module; plain Python needs no Cython installed
    import cython  # type: ignore[import-untyped,unused-ignore]

    COMPILED: bool = bool(cython.compiled)
except ImportError:
    COMPILED = False

# A committed entry's command applied (result bytes), or refused (see apply_entries).
Step = Callable[[int, bytes], bytes]
Refusal = Callable[[Exception, int], "bytes | None"]


async def drive(node: WorkSource, sm: StateMachine) -> None:
    """Feed the node's work items to `sm` in order until the node shuts down (next_work -> None).

    If the state machine raises, the item is failed (so the core stops waiting on it) and the error
    is re-raised: a state machine that cannot apply an entry must stop, never skip it.
    """
    while True:
        work = await node.next_work()
        if work is None:
            return
        try:
            if work.kind == "apply":
                responses = sm.apply(work.entries)
                if len(responses) != len(work.entries):
                    raise ValueError(
                        f"state machine returned {len(responses)} responses for {len(work.entries)} entries"
                    )
            elif work.kind == "snapshot":
                sm.snapshot(work.path)
            elif work.kind == "restore":
                sm.restore(work.path)
            else:
                raise ValueError(f"unknown work kind {work.kind!r}")
        except BaseException as exc:  # any failure, even KeyboardInterrupt, must release the core
            work.fail(f"{type(exc).__name__}: {exc}")
            raise
        if work.kind == "apply":
            work.complete(responses)
        else:
            work.complete()


def apply_entries(
    conn: sqlite3.Connection, entries: list[tuple[int, int, bytes]], step: Step, refusal: Refusal
) -> list[bytes]:
    """Apply committed (index, term, payload) `entries` in order, each in its own savepoint, inside
    the transaction the caller opened; one response each.

    `step(index, payload)` applies one entry and returns its response. When it raises an Exception,
    `refusal(exc, index)` gives the response of a refused command (its savepoint is rolled back: it
    changed nothing, the batch goes on), or None: then the exception propagates and the caller rolls
    the whole transaction back. `entries` must be a list of tuples (the core hands out exactly that;
    the compiled module checks it).
    """
    execute = conn.execute
    responses: list[bytes] = []
    for entry in entries:
        index = entry[0]
        execute("SAVEPOINT cmd")
        try:
            response = step(index, entry[2])
        except Exception as exc:
            refused = refusal(exc, index)
            if refused is None:
                raise
            execute("ROLLBACK TO cmd")
            response = refused
        responses.append(response)
        execute("RELEASE cmd")
    return responses
