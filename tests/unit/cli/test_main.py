"""The `warren` command's frame: help, version, usage errors and the one-line error contract."""

from __future__ import annotations

from importlib import metadata
from types import ModuleType

import pytest

from warren import __version__
from warren.cli.main import main


@pytest.mark.parametrize("argv", [[], ["--help"], ["-h"], ["help"]])
def test_help_exits_0(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: warren")
    for command in ("cluster", "manager", "node", "service"):
        assert command in out
    assert "later releases" not in out


@pytest.mark.parametrize(
    "argv",
    [
        ["cluster", "--help"], ["cluster", "init", "--help"], ["cluster", "info", "--help"],
        ["cluster", "join-token", "--help"], ["cluster", "backup", "--help"], ["manager", "join", "--help"],
        ["node", "ls", "--help"], ["node", "rm", "--help"], ["service", "create", "--help"],
        ["service", "scale", "--help"], ["help", "service", "create"],
    ],
)
def test_every_level_has_help(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 0
    out = capsys.readouterr().out
    words = [w for w in argv if w not in ("--help", "help")]
    assert out.startswith("usage: warren " + " ".join(words))


def test_heartbeat_flag_is_documented_as_the_followers_wait(capsys: pytest.CaptureFixture[str]) -> None:
    # The guide's (hashicorp/raft's) meaning; the interval is derived from it and said so.
    assert main(["cluster", "init", "--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert ("--raft-heartbeat-timeout DUR a follower that hears nothing from a leader for DUR") in out
    assert "(default 150ms: heartbeats every 50ms)" in out
    assert "at least the heartbeat timeout (default: the heartbeat timeout, 150ms)" in out
    assert "(450ms to 600ms by default" in out


@pytest.mark.parametrize("argv", [["--version"], ["service", "--version"], ["node", "list", "--version"]])
def test_version(argv: list[str], raft: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    # Warren's own line first (the version of the package it runs), then its Raft core and openraft.
    assert main(argv) == 0
    assert capsys.readouterr().out == (
        f"warren {__version__} (warren-orchestrator)\n"
        f"warren-raft {metadata.version('warren-raft')}\n"
        f"openraft {raft.OPENRAFT_VERSION}\n"
    )


def test_unknown_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["frobnicate", "--now"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.strip() == "warren: unknown command 'frobnicate' (see 'warren --help')"


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["cluster", "frob"], "unknown command 'frob' (see 'warren cluster --help')"),
        (["cluster"], "missing command: warren cluster init|info|join-token|backup"),
        (["node", "list", "-o", "xml"], "invalid choice: 'xml'"),
        (["node", "inspect"], "the following arguments are required: NAME"),
        (["service", "create", "web"], "the following arguments are required: --image"),
        (["service", "scale", "web", "-1"], "expected a whole number of 0 or more"),
        (["service", "scale", "web", "many"], "expected a whole number of 0 or more"),
        (["service", "create", "web", "--image", "x", "--env", "NOPE"], "expected KEY=VALUE, got 'NOPE'"),
        (["service", "create", "web", "--image", "x", "--mode", "global", "--replicas", "2"],
         "--replicas does not apply to --mode global"),
        (["service", "create", "web", "--image", "x", "--command", "sh -c 'oops"], "argument --command"),
        (["cluster", "join-token", "admin"], "invalid choice: 'admin'"),
        (["cluster", "backup"], "the following arguments are required: --output"),
        (["cluster", "init", "--restore-key", "data.key"], "--restore-key needs --restore"),
        (["cluster", "init", "--raft-election-timeout", "5"], "invalid duration '5'"),
        (["cluster", "init", "--listen-addr", "nowhere"], "listen_addr 'nowhere' must be HOST:PORT"),
        (["cluster", "init", "--raft-heartbeat-timeout", "1s", "--raft-election-timeout", "500ms"],
         "election_timeout_s (0.5 s) must be at least heartbeat_timeout_s (1.0 s)"),
        (["cluster", "init", "--raft-heartbeat-timeout", "2ms"],
         "heartbeat_timeout_s (0.002 s) must be at least"),
        (["node", "list", "--manager", "host:99999"], "--manager 'host:99999' must be HOST:PORT"),
        (["node", "list", "--mana", "x:1"], "unrecognized arguments: --mana"),
    ],
)
def test_usage_errors_exit_2_with_one_line(
    argv: list[str], expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("warren: ")
    assert expected in lines[0]


def test_malformed_manager_env_is_a_usage_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("WARREN_MANAGER", "host:0")
    assert main(["node", "list"]) == 2
    assert capsys.readouterr().err.startswith("warren: WARREN_MANAGER 'host:0' must be HOST:PORT")
