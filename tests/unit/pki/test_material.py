"""A node's certificate and key files: private, and checked when read."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest

from tests.unit.pki.conftest import Issue
from warren.errors import CorruptStateError
from warren.pki import certs, material


def test_node_material_is_private_and_checked(tmp_path: Path, ca: tuple[Any, Any], issue: Issue) -> None:
    data_dir = str(tmp_path)
    assert material.load_node(data_dir) is None
    cert_pem, key_pem = issue("manager-1-aaaaaa", "manager")
    material.save_node(data_dir, certs.cert_pem(ca[1]), cert_pem, key_pem)
    loaded = material.load_node(data_dir)
    assert loaded is not None and loaded.identity.name == "manager-1-aaaaaa"
    assert "PRIVATE" not in repr(loaded)
    for name in (material.NODE_FILE, material.CA_FILE):
        assert stat.S_IMODE(os.stat(tmp_path / material.DIR_NAME / name).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(tmp_path / material.DIR_NAME).st_mode) == 0o700
    # A key that does not match its certificate is damage, named as such.
    _, other_key = issue("x", "worker")
    (tmp_path / material.DIR_NAME / material.NODE_FILE).write_bytes(cert_pem + other_key)
    with pytest.raises(CorruptStateError, match="does not match"):
        material.load_node(data_dir)
