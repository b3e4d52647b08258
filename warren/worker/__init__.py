"""The worker agent: joins a cluster, keeps a session with the managers, runs its assigned tasks
through the container runtimes, and keeps them going on its own while no manager answers.

identity.py (node.json), cache.py (worker.db), session.py (HTTP client of the managers), agent.py (the
reconcile loop), health.py (health checks), resources.py (what the machine offers), daemon.py (entry
points: `run_worker` for `warren worker start`, `WorkerAgent` for a hybrid manager's local worker).
"""
