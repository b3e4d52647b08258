"""Types of the compiled bridge, warren/_raft.pyx (same signature as warren._raft_py.drive)."""

from warren.raft_bridge import StateMachine, WorkSource

async def drive(node: WorkSource, sm: StateMachine) -> None: ...
