"""What `warren --version` says: the versions of Warren, of its Raft core and of openraft.

Warren's and the core's versions come from the installed distributions' metadata, openraft's from the
core (`warren_raft.OPENRAFT_VERSION`). All of it is looked up only when asked: building the parser
costs nothing, and `warren --version` itself loads neither httpx nor the command tree (see entry.py).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

# PyPI's `warren` is another project: Warren is published as warren-orchestrator (its import package
# and its command stay `warren`); the Raft core keeps its own name, warren-raft (module warren_raft).
DISTRIBUTION = "warren-orchestrator"
RAFT_DISTRIBUTION = "warren-raft"


def version_text() -> str:
    """Three lines, `NAME VERSION` each: Warren (with its distribution's name), the core, openraft."""
    from importlib import metadata

    import warren

    try:
        warren_line = f"warren {metadata.version(DISTRIBUTION)} ({DISTRIBUTION})"
    except metadata.PackageNotFoundError:
        warren_line = f"warren {warren.__version__} (from {warren.__path__[0]}; {DISTRIBUTION} not installed)"
    try:
        import warren_raft
    except ImportError:
        return f"{warren_line}\n{RAFT_DISTRIBUTION} not installed\nopenraft unknown"
    try:
        raft_version = metadata.version(RAFT_DISTRIBUTION)
    except metadata.PackageNotFoundError:  # a core built in place (maturin develop) may carry no metadata
        raft_version = warren_raft.__version__
    return f"{warren_line}\n{RAFT_DISTRIBUTION} {raft_version}\nopenraft {warren_raft.OPENRAFT_VERSION}"


class VersionAction(argparse.Action):
    """`--version` at any level of the command tree: prints `version_text()` and exits 0."""

    def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS,
                 default: Any = argparse.SUPPRESS, help: str | None = None) -> None:
        super().__init__(option_strings=option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        print(version_text())
        parser.exit()
