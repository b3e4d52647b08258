"""Files replaced atomically: with fsyncs by default, without them when asked (`sync=False`), the same
file either way."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from warren import durable


@pytest.mark.parametrize("sync", [True, False])
def test_a_file_is_replaced_whole_and_private_with_or_without_fsync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sync: bool
) -> None:
    synced: list[int] = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real(fd))[1])
    path = tmp_path / "state.json"
    durable.write_atomically(str(path), b"old")
    synced.clear()
    durable.write_atomically(str(path), b"new", sync=sync)
    assert path.read_bytes() == b"new"
    assert path.stat().st_mode & 0o777 == 0o600
    assert not (tmp_path / "state.json.tmp").exists()
    assert len(synced) == (2 if sync else 0)  # the file and its directory, or neither
