"""The CLI's credentials: an admin certificate saved privately and found for the cluster it is for."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest

from tests.unit.pki.conftest import Issue
from warren.pki import certs, userconfig


def test_the_cli_finds_its_only_cluster(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ca: tuple[Any, Any], issue: Issue
) -> None:
    monkeypatch.setenv("WARREN_CONFIG_DIR", str(tmp_path))
    assert userconfig.find(["127.0.0.1:1"]) is None
    cert_pem, key_pem = issue("admin", "admin")
    directory = userconfig.save_admin("cluster-test", certs.cert_pem(ca[1]), cert_pem, key_pem)
    assert stat.S_IMODE(os.stat(Path(directory) / userconfig.ADMIN_FILE).st_mode) == 0o600
    found = userconfig.find(["127.0.0.1:1"])
    assert found is not None and found.dir == directory
    assert found.context().verify_mode.name == "CERT_REQUIRED"
