"""The leader's reconciler: turns services' specs and the cluster's nodes into tasks, and keeps them
there through node failures, crashes, drains, scaling and rolling updates.

`plan(conn, now, settings)` reads the replicated state and answers the commands to propose now and
when to look again (`Plan.wake_at`); it never writes, waits or talks to anything.
"""

from warren.reconciler.actions import Plan
from warren.reconciler.planner import new_task_id, plan

__all__ = ["Plan", "new_task_id", "plan"]
