"""The contract between the Raft core and Warren's state machine, and the loop that drives it.

`drive(node, sm)` pulls work items from a `warren_raft.RaftNode` in log order and hands them to the
state machine until the node shuts down. The first item after every start is a restore (the latest
snapshot, or None for an empty state): the state machine is rebuilt from snapshot plus log replay.

Two implementations with the same behaviour: the compiled `warren._raft` (Cython, built on install)
and the pure-Python `warren._raft_py`, used when WARREN_NO_EXTENSIONS is set (non-empty) or the
compiled module is missing. `IMPLEMENTATION` says which one was picked.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Literal, Protocol

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

if os.environ.get("WARREN_NO_EXTENSIONS"):
    from warren._raft_py import drive

    IMPLEMENTATION = "python"
else:
    try:
        from warren._raft import drive

        IMPLEMENTATION = "cython"
    except ImportError:
        from warren._raft_py import drive

        IMPLEMENTATION = "python"

__all__ = ["IMPLEMENTATION", "StateMachine", "WorkSource", "drive"]
