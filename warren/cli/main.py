"""Entry point of the `warren` command. Exit status: 0 success, 1 error, 2 usage error."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from warren import __version__

HELP = f"""\
usage: warren <command> [options]

Warren {__version__}: a container orchestrator for edge and LAN clusters.

Commands (cluster, manager, worker, node, service, apply) arrive in later releases.

options:
  -h, --help     show this help and exit
  --version      print the version and exit
"""


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(HELP, end="")
        return 0
    if args[0] == "--version":
        print(f"warren {__version__}")
        return 0
    print(f"warren: unknown command {args[0]!r} (see 'warren --help')", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
