"""The client of a manager's HTTP API, shared by the CLI (warren.cli) and the drill (warren.drill).

    wire.py     addresses, TLS, retries across managers, API errors as Warren's exceptions
    manager.py  ManagerClient: one method per API call
"""

from __future__ import annotations

from warren.client.manager import ManagerClient
from warren.client.wire import base_url

__all__ = ["ManagerClient", "base_url"]
