"""A damaged log must stop the node at open with a clear error, never start it silently."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.cluster import Cluster, NodeFatal, NodeProc

LOG_FILE = "raft-log.redb"  # warren_raft's log store, directly in the data dir
MARK = "CORRUPT-ME-"


PAYLOADS = [f"{MARK}{i:04d}-" + "z" * 100 for i in range(40)]


def write_and_stop(cluster: Cluster) -> tuple[NodeProc, Path, int]:
    """A single node with distinctive entries, shut down cleanly; returns it, its log and the last index."""
    node = cluster.start(1)
    last_index = 0
    for payload in PAYLOADS:
        last_index = node.call("propose", data=payload)["index"]
    # Later commits, so that every tree version redb could fall back to holds the marked entries: a
    # damaged entry must be reported, not rolled back as if it were a torn last write.
    for i in range(5):
        last_index = node.call("propose", data=f"filler-{i}")["index"]
    node.stop()
    assert not node.alive
    log = node.data_dir / LOG_FILE
    assert log.is_file(), (
        f"no {LOG_FILE} in {node.data_dir}: {sorted(p.name for p in node.data_dir.iterdir())}"
    )
    return node, log, last_index


def start_expecting_fatal(node: NodeProc) -> NodeFatal:
    with pytest.raises(NodeFatal) as info:
        node.restart()
    assert info.value.returncode == 3, f"exit code {info.value.returncode}\n{node.log_tail()}"
    assert not node.alive
    return info.value


def test_flipped_bytes_in_the_last_entry_fail_with_corrupt_log_error(cluster: Cluster) -> None:
    node, log, _ = write_and_stop(cluster)
    last_payload = PAYLOADS[-1]
    data = bytearray(log.read_bytes())
    needle = last_payload.encode()
    # redb is copy-on-write, so older copies of the page may also hold the payload (freed, or still
    # referenced by the previous commit): damage every copy of the last marked entry.
    offsets = []
    start = data.find(needle)
    while start != -1:
        offsets.append(start)
        start = data.find(needle, start + 1)
    assert offsets, f"payload {last_payload[:20]}... not found verbatim in {log}"
    for offset in offsets:
        for i in range(offset + 20, offset + 36):
            data[i] ^= 0xFF
    log.write_bytes(bytes(data))

    fatal = start_expecting_fatal(node)
    assert fatal.cls == "CorruptLogError", fatal
    assert "raft-log" in fatal.message, f"the message should name the log file: {fatal.message!r}"


def test_truncated_log_fails_to_open(cluster: Cluster) -> None:
    node, log, _ = write_and_stop(cluster)
    size = log.stat().st_size
    with open(log, "r+b") as f:
        f.truncate(size // 2)

    fatal = start_expecting_fatal(node)
    assert fatal.cls in ("CorruptLogError", "StorageError"), fatal


def test_clean_shutdown_reopens(cluster: Cluster) -> None:
    # The control for the two tests above: the same steps without damage start fine.
    node, _, last_index = write_and_stop(cluster)
    node.restart()
    cluster.leader()
    cluster.wait_applied(last_index)
    assert [p for _, p in node.state() if p.startswith(MARK)] == PAYLOADS
