"""`python -m warren ...`: the `warren` command (what the drill runs its daemons with)."""

import sys

from warren.cli.entry import main

if __name__ == "__main__":
    sys.exit(main())
