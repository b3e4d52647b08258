"""The worker agent: joins a cluster, keeps a session with the managers, runs its assigned tasks
through the container runtimes, and keeps them going on its own while no manager answers.

daemon.py    entry points: `run_worker` (`warren worker start`), `WorkerAgent` (a hybrid manager's
             local worker, or any asyncio program)
agent.py     the reconcile loop: each task's containers in line with its assignment
link.py      the long-polled session with the managers (heartbeat, assignments, log requests)
session.py   the HTTP client of the managers, with failover
reporter.py  task status updates: queued in worker.db, sent at once, resent until acknowledged
logstream.py the output of tasks, streamed to the leader in chunks
health.py    health checks (cmd, http, tcp)
taskspec.py  what a TASK document asks: the runtime's TaskRun, the restart policy
cache.py     worker.db (assignments, local view of tasks, status queue)
identity.py  node.json (name, session secret, cluster, managers)
resources.py CPUs, memory and host name offered to the scheduler
"""
