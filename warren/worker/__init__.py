"""The worker agent: joins a cluster, keeps a session with the managers, runs its assigned tasks
through the container runtimes, and keeps them going on its own while no manager answers.

daemon.py     entry points: `run_worker` (`warren worker start`), `WorkerAgent` (a hybrid manager's
              local worker, or any asyncio program: identity, join, runtimes, then the loop)
loop.py       WorkerLoop: the assigned set reconciled, one controller per task; exits, health, news
controller.py TaskController: one task driven through its states, one step at a time; what it
              does to the task (start, stop, remove, record and report a state, health checks)
steps.py      one task's state machine: which step next (autonomy: restarts in place while cut off)
containers.py this worker's containers as last seen, and the ones it removed itself
session.py    WorkerSession: the long-polled session with the managers (heartbeat, assignments,
              log requests)
client.py     WorkerClient: the HTTPS client of the managers, with failover
backoff.py    the jittered pause between rounds of failed calls
reporter.py   task status updates: queued in worker.db, sent at once, resent until acknowledged
logstream.py  the output of tasks, streamed to the leader in chunks
health.py     health checks (cmd, http, tcp)
secrets.py    secret values (memory only) and each task's secrets dir
configs.py    config contents (on disk) and each task's config files
endpoints.py  the cluster's service endpoints from the session: checked, kept on disk, a hosts file
dns.py        DnsServer: service names answered from the endpoints, other names forwarded
taskspec.py   what a TASK document asks: its spec (TaskSpec, decoded once), the runtime's TaskRun
cache.py      worker.db (assignments, local view of tasks, status queue)
identity.py   node.json (name, session secret, cluster, managers)
resources.py  CPUs, memory and host name offered to the scheduler
"""
