"""A manager whose Raft log's disk fills up exits non-zero with one line naming the file and errno; the
other managers keep quorum and every acknowledged write; with space again it rejoins and catches up.

The full disk is real: the third manager's Raft directory is a small tmpfs (root only; skipped otherwise).
"""

from __future__ import annotations

import base64
import os
import subprocess
import time
from collections.abc import Callable

import httpx
import pytest

from tests.integration.managers import ManagerCluster, ManagerProc, api, get_json
from warren.testing.wait import eventually

LOG_FILE = "raft-log.redb"
SECRET_BYTES = 400 * 1024  # under the default max_secret_bytes (500 KiB): the log grows fast


def _secret_names(m: ManagerProc) -> set[str]:
    """The secrets `m` holds in its own state (a local read)."""
    return {s["name"] for s in get_json(m.api_addr, "/v1/secrets")}


def _create_secret(m: ManagerProc, name: str) -> httpx.Response:
    data = base64.b64encode(os.urandom(SECRET_BYTES)).decode("ascii")
    with api(m.api_addr, timeout=15) as client:
        return client.post("/v1/secrets", json={"name": name, "data": data})


def test_a_manager_with_a_full_raft_disk_exits_naming_file_and_errno(
    make_managers: Callable[..., ManagerCluster],
) -> None:
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    cluster = make_managers()
    m1 = cluster.init()
    m2 = cluster.add_manager()
    m3 = cluster.new_manager()
    raft_dir = m3.data_dir / "raft"
    raft_dir.mkdir(mode=0o700, parents=True)
    try:
        mount = ["mount", "-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs", str(raft_dir)]
        subprocess.run(mount, check=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"cannot mount a tmpfs here: {exc}")
    try:
        m3.join(cluster.join_token(m1), m1.api_addr)
        leader = cluster.leader()

        acked: list[str] = []
        deadline = time.monotonic() + 120
        i = 0
        while m3.alive:
            assert time.monotonic() < deadline, f"m3 never filled its disk\n{m3.log_tail()}"
            name = f"fill-{i}"
            i += 1
            try:
                if _create_secret(leader, name).status_code == 201:
                    acked.append(name)
                    continue
            except httpx.HTTPError:
                pass
            leader = cluster.leader(among=[m1, m2])
        assert acked, "nothing was acknowledged before the disk filled"

        code = m3.wait_exit(30)
        assert code not in (None, 0), f"m3 exit status {code}\n{m3.log_tail()}"
        last = m3.errors().strip().splitlines()[-1]
        assert last.startswith("warren: raft stopped: "), m3.log_tail()
        assert "ENOSPC" in last and str(raft_dir / LOG_FILE) in last, last

        # The other two keep quorum and every acknowledged write.
        leader = cluster.leader(among=[m1, m2])
        assert _create_secret(leader, "after").status_code == 201
        acked.append("after")
        for m in (m1, m2):
            what = f"{m.label} to hold every acknowledged secret"
            eventually(lambda m=m: set(acked) <= _secret_names(m), 20, what)

        # With space again, m3 restarts from its intact log and catches up.
        # Room for everything its peers logged, twice over: the loop above writes until
        # it sees m3 gone, so how much that is depends on the machine's speed (a fixed 256 MiB was
        # once less than the peers' 290 MiB log on a loaded machine, and m3 filled its disk again).
        peer_log_bytes = sum(p.stat().st_size for p in (m1.data_dir / "raft").rglob("*") if p.is_file())
        size_mib = 2 * peer_log_bytes // (1024 * 1024) + 64
        subprocess.run(["mount", "-o", f"remount,size={size_mib}m", str(raft_dir)], check=True)
        m3.restart()
        eventually(lambda: set(acked) <= _secret_names(m3), 30, "m3 to hold every acknowledged secret")
    finally:
        m3.kill()
        subprocess.run(["umount", "-l", str(raft_dir)], check=False)
