"""Warren: a container orchestrator for edge and LAN clusters.

A few managers keep the cluster state in a Raft group (the Rust core, `warren_raft`); workers run the
containers. This package holds everything on the Python side: state machine, manager, scheduler,
worker, runtimes, HTTP API and the `warren` command.
"""

__version__ = "0.1.0"

import sys as _sys

# `import httpx` also imports httpx's own command-line client when `click` is installed (uvicorn brings
# it): 1.7 MB and about 20 ms in every Warren process, for a `main` Warren never calls. A None entry
# makes that import fail at once, and httpx then defines a stub `main` instead (docs/decisions.md,
# "Daemons load cryptography only to make keys").
_sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]
