"""Types of the compiled bridge, warren._raft: warren/_raft_py.py compiled with warren/_raft.pxd."""

import sqlite3

from warren._raft_py import Refusal, Step
from warren.raft_bridge import StateMachine, WorkSource

COMPILED: bool

async def drive(node: WorkSource, sm: StateMachine) -> None: ...
def apply_entries(
    conn: sqlite3.Connection, entries: list[tuple[int, int, bytes]], step: Step, refusal: Refusal
) -> list[bytes]: ...
