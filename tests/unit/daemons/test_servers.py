"""The daemons' servers: the descriptor limit the connection caps are fractions of."""

from __future__ import annotations

import subprocess
import sys


def test_a_daemon_raises_its_soft_descriptor_limit_to_the_hard_one() -> None:
    # The connection caps are fractions of the soft limit: a daemon started with a low soft limit (a
    # service manager's default 1024) raises it to the hard limit first.
    code = (
        "import resource\n"
        "from warren.daemons.servers import raise_nofile_limit\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (256, 1024))\n"
        "raise_nofile_limit()\n"
        "print(*resource.getrlimit(resource.RLIMIT_NOFILE))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["1024", "1024"]
