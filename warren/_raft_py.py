"""Pure-Python twin of warren/_raft.pyx: same behaviour, line for line. Keep the two in step."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from warren.raft_bridge import StateMachine, WorkSource


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
