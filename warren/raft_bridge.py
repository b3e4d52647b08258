"""The contract between the Raft core and Warren's state machine, and the loop that drives it.

`drive(node, sm)` pulls work items from a `warren_raft.RaftNode` in log order and hands them to the
state machine until the node shuts down. The first item after every start is a restore (the latest
snapshot, or None for an empty state): the state machine is rebuilt from snapshot plus log replay.

`apply_entries(conn, entries, step, refusal)` is the state machine's entry loop (each committed entry
in its own savepoint), used by warren.store.machine.

One source, two builds: `warren._raft_py` is plain Python; `warren._raft` is the same file compiled
by Cython (built on install, typed by warren/_raft.pxd). The compiled one is used unless
WARREN_NO_EXTENSIONS is set (non-empty) or it is missing (or is the pure file under its name, as in the
pure wheel). `IMPLEMENTATION` says which one was picked.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Literal, Protocol

from warren._raft_py import Refusal, Step

if TYPE_CHECKING:
    import warren_raft


class StateMachine(Protocol):
    """What the Raft core replicates into. Every method is deterministic and synchronous.

    A method that raises stops the node's state machine: the item is failed and `drive` re-raises.
    An entry is never skipped.
    """

    def apply(self, entries: list[tuple[int, int, bytes]]) -> list[bytes]:
        """Apply committed (index, term, payload) entries in the order given; one response each.

        Commands proposed together may share one log entry, and so one index.
        """
        ...

    def snapshot(self, path: str) -> None:
        """Write the whole state, as applied so far, to the file at `path`."""
        ...

    def restore(self, path: str | None) -> None:
        """Replace the whole state with the snapshot file at `path` (None: empty state).

        The file belongs to the core: read or copy it, never modify or delete it.
        """
        ...


class WorkSource(Protocol):
    """Where work comes from: a `warren_raft.RaftNode`, or an in-memory fake in tests."""

    async def next_work(self) -> warren_raft.Work | None: ...


IMPLEMENTATION: Literal["cython", "python"]


def _compiled() -> bool:
    """Whether the compiled bridge is importable, really compiled, and built from this source (a stale
    build of the old warren/_raft.pyx, left in place until `make install` runs again, has no COMPILED)."""
    try:
        from warren import _raft
    except ImportError:
        return False
    return getattr(_raft, "COMPILED", False) is True


if not os.environ.get("WARREN_NO_EXTENSIONS") and _compiled():
    from warren._raft import apply_entries, drive

    IMPLEMENTATION = "cython"
else:
    from warren._raft_py import apply_entries, drive

    IMPLEMENTATION = "python"

__all__ = ["IMPLEMENTATION", "Refusal", "StateMachine", "Step", "WorkSource", "apply_entries", "drive"]
