"""`warren worker start`: run a worker agent in the foreground."""

from __future__ import annotations

from warren.cli.parsing import Subparsers


def register(worker: Subparsers) -> None:
    """Filled in by the worker agent's change."""
