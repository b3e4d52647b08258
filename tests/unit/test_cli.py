"""The `warren` command's skeleton: help, version, and the usage-error exit status."""

from __future__ import annotations

import pytest

from warren import __version__
from warren.cli.main import main


@pytest.mark.parametrize("argv", [[], ["--help"], ["-h"], ["help"]])
def test_help_exits_0(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: warren")
    assert "later releases" in out


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"warren {__version__}\n"


def test_unknown_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["frobnicate", "--now"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.strip() == "warren: unknown command 'frobnicate' (see 'warren --help')"
