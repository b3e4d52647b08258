"""The worker's node.json: private, replaced atomically, refused with advice when damaged."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from warren.durable import private_data_dir
from warren.errors import CorruptStateError
from warren.worker import identity
from warren.worker.identity import WorkerIdentity


def test_identity_round_trip_private_and_atomic(tmp_path: Path) -> None:
    data_dir = private_data_dir(str(tmp_path / "w"))
    assert stat.S_IMODE(os.stat(data_dir).st_mode) == 0o700
    assert identity.load(data_dir) is None
    me = WorkerIdentity("worker-1", "the-secret", "cluster-1", ("10.0.0.1:8080", "10.0.0.2:8080"))
    identity.save(data_dir, me)
    assert identity.load(data_dir) == me
    assert stat.S_IMODE(os.stat(identity.path(data_dir)).st_mode) == 0o600
    assert os.listdir(data_dir) == ["node.json"]  # no temp file left behind
    assert "the-secret" not in repr(me)
    # A stale temp file with loose bits from a crash does not make the new file readable by others.
    tmp = identity.path(data_dir) + ".tmp"
    with open(tmp, "w") as f:
        f.write("junk")
    os.chmod(tmp, 0o644)
    identity.save(data_dir, me)
    assert stat.S_IMODE(os.stat(identity.path(data_dir)).st_mode) == 0o600


@pytest.mark.parametrize(
    "content", [b"{not json", b"[1, 2]", b'{"name": "w"}', b'{"name": "w", "secret": "", "cluster_id": "c"}']
)
def test_damaged_identity_is_refused_with_advice(tmp_path: Path, content: bytes) -> None:
    (tmp_path / "node.json").write_bytes(content)
    with pytest.raises(CorruptStateError, match="join this worker again"):
        identity.load(str(tmp_path))
