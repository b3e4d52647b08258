"""The `warren` console script. `warren --version` is answered here, before the command tree (httpx,
the API client, every command module) is imported; everything else goes to `warren.cli.main`."""

from __future__ import annotations

import sys


def main() -> int:
    if sys.argv[1:] == ["--version"]:
        from warren.cli.version import version_text

        print(version_text())
        return 0
    from warren.cli.main import main as run_command

    return run_command()
