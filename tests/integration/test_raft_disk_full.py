"""A node whose disk fills up stops cleanly: it names the file and errno, the others keep quorum and
every acknowledged write, and once it has space again it restarts from its intact log and catches up.

The full disk is real: node 3's data dir is a small tmpfs (needs root to mount; skipped otherwise).
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.checks import assert_contains_in_order, converge
from tests.integration.cluster import CallTimeout, Cluster, NodeExited, NodeProc, RemoteError

LOG_FILE = "raft-log.redb"
EXIT_STATE_MACHINE_FAILED = 4  # raftnode's exit code when its state machine's driver stops
# Small enough to fill within a few hundred entries, large enough for a fresh redb log.
SMALL = "3m"
ROOMY = "64m"
BLOB = "x" * 16_000  # per entry, so the log grows fast


def _mount(path: Path, size: str) -> None:
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)], check=True)


def _remount(path: Path, size: str) -> None:
    subprocess.run(["mount", "-o", f"remount,size={size}", str(path)], check=True)


@pytest.fixture
def small_disk(cluster: Cluster) -> Iterator[Path]:
    """Node 3's data dir on a 3 MB tmpfs, unmounted after the test (node 3 killed first)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    path = cluster.base_dir / "node3"
    try:
        _mount(path, SMALL)
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"cannot mount a tmpfs here: {exc}")
    try:
        yield path
    finally:
        node = cluster.nodes.get(3)
        if node is not None:
            node.kill()
        subprocess.run(["umount", "-l", str(path)], check=False)


def _others(cluster: Cluster) -> list[NodeProc]:
    return [cluster.nodes[1], cluster.nodes[2]]


@pytest.mark.parametrize("role", ["follower", "leader"])
def test_a_full_disk_stops_the_node_and_the_others_keep_every_acknowledged_write(
    cluster: Cluster, small_disk: Path, role: str
) -> None:
    leader = cluster.start(3)
    full = cluster.nodes[3]
    assert full.data_dir == small_disk
    if role == "leader" and leader is not full:
        leader.call("transfer_leadership", to=3)
        leader = cluster.leader()
    assert (leader is full) == (role == "leader")

    # Write until node 3's disk is full and it stops; count what was acknowledged.
    acked: list[str] = []
    deadline = time.monotonic() + 60  # filling takes ~2 s
    i = 0
    while full.wait_exit(0) is None:
        assert time.monotonic() < deadline, f"node 3 never filled its disk\n{full.log_tail()}"
        payload = f"fill-{i:05d}-{BLOB}"
        i += 1
        try:
            leader.call("propose", data=payload, timeout=10)
            acked.append(payload)
        except (RemoteError, NodeExited, CallTimeout):
            leader = cluster.leader(nodes=_others(cluster), timeout=15)
    assert acked, "nothing was acknowledged before the disk filled"

    # It stopped with one error naming the file and the errno, not a crash or a hang.
    assert full.wait_exit(10) == EXIT_STATE_MACHINE_FAILED, full.log_tail()
    assert full.fatal is not None, full.log_tail()
    cls, message = full.fatal
    assert cls == "StorageError", full.fatal
    assert "ENOSPC" in message and str(small_disk / LOG_FILE) in message, message
    assert "\n" not in message

    # The other two keep quorum: they elect (or keep) a leader and commit more.
    leader = cluster.leader(nodes=_others(cluster), timeout=15)
    for k in range(5):
        payload = f"after-{k}"
        leader.call("propose", data=payload)
        acked.append(payload)
    last = leader.metrics()["last_log_index"]
    converge(cluster, last, _others(cluster))
    for node in _others(cluster):
        assert_contains_in_order(node.state(), acked, node)

    # With space again it opens its log (no gap, no "corrupt log"), rejoins and catches up.
    _remount(small_disk, ROOMY)
    full.restart()
    leader.call("propose", data="rejoined")
    acked.append("rejoined")
    last = leader.metrics()["last_log_index"]
    converge(cluster, last, [*_others(cluster), full])
    for node in [*_others(cluster), full]:
        assert_contains_in_order(node.state(), acked, node)
