"""`warren dashboard`'s own checks: where it may listen, and the token file."""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path

import pytest

from warren.cli.dashboard_cmds import check_bind
from warren.cli.main import main
from warren.cli.parsing import UsageError
from warren.dashboard.server import bind, load_token
from warren.errors import ConfigError


@pytest.mark.parametrize("address", ["127.0.0.1", "127.0.0.5", "::1", "localhost"])
def test_loopback_needs_nothing(address: str) -> None:
    assert check_bind(address, allow_remote=False) == []


def test_a_remote_bind_needs_allow_remote_and_warns() -> None:
    with pytest.raises(UsageError, match="--allow-remote"):
        check_bind("192.168.1.5", allow_remote=False)
    warnings = check_bind("192.168.1.5", allow_remote=True)
    assert len(warnings) == 1 and "admin certificate" in warnings[0]


@pytest.mark.parametrize("address", ["0.0.0.0", "::"])
def test_every_address_at_once_is_refused_even_when_allowed(address: str) -> None:
    with pytest.raises(UsageError, match="one address"):
        check_bind(address, allow_remote=True)


def test_a_host_name_is_refused() -> None:
    with pytest.raises(UsageError, match="IP address"):
        check_bind("dashboard.example", allow_remote=True)


def test_the_command_refuses_a_remote_bind_before_anything_else(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["dashboard", "--bind", "10.1.2.3", "--manager", "127.0.0.1:1"]) == 2
    assert "--allow-remote" in capsys.readouterr().err


def test_a_port_already_taken_is_a_clear_error() -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    try:
        with pytest.raises(ConfigError, match="cannot listen on 127.0.0.1:"):
            bind("127.0.0.1", taken.getsockname()[1])
    finally:
        taken.close()


def test_without_a_file_each_run_has_a_new_token() -> None:
    first, second = load_token(None, 32), load_token(None, 32)
    assert first != second and len(first) >= 43


def test_a_token_file_is_made_owner_only_and_kept(tmp_path: Path) -> None:
    path = tmp_path / "token"
    made = load_token(str(path), 32)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_token(str(path), 32) == made


def test_a_token_file_others_can_read_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("a" * 43)
    os.chmod(path, 0o644)
    with pytest.raises(ConfigError, match="readable by others"):
        load_token(str(path), 32)


@pytest.mark.parametrize("text", ["short", "a" * 30 + " <script>"])
def test_a_token_file_without_a_token_is_refused(tmp_path: Path, text: str) -> None:
    path = tmp_path / "token"
    path.write_text(text)
    os.chmod(path, 0o600)
    with pytest.raises(ConfigError, match="not a token"):
        load_token(str(path), 32)
