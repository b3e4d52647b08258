"""Warren: a container orchestrator for edge and LAN clusters.

A few managers keep the cluster state in a Raft group (the Rust core, `warren_raft`); workers run the
containers. This package holds everything on the Python side: state machine, manager, scheduler,
worker, runtimes, HTTP API and the `warren` command.
"""

__version__ = "0.1.0"
