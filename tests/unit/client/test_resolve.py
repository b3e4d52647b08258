"""wire.resolve: where another HTTP client (the dashboard's proxy) sends requests, found as the CLI does."""

from __future__ import annotations

from pathlib import Path

import pytest

from warren.client.wire import resolve
from warren.errors import ConfigError, UnauthorizedError


def test_a_unix_socket_is_its_path_and_the_local_base() -> None:
    assert resolve("unix:/run/warren/warren.sock") == (["http://localhost"], "/run/warren/warren.sock", True)


def test_no_manager_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="names no manager"):
        resolve(" , ")


def test_a_socket_with_other_managers_is_refused() -> None:
    with pytest.raises(ConfigError, match="unix socket"):
        resolve("unix:/run/w.sock,10.0.0.1:8080")


def test_tcp_managers_need_this_users_admin_certificate(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WARREN_CONFIG_DIR", str(tmp_path))
    with pytest.raises(UnauthorizedError, match="no admin certificate"):
        resolve("10.0.0.1:8080,10.0.0.2")
