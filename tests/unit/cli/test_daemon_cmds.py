"""`warren cluster init` / `warren manager join`: the ManagerSettings the flags build, and what is called."""

from __future__ import annotations

from typing import Any

import pytest

from warren.cli.main import main
from warren.config import ManagerSettings, RaftSettings
from warren.daemons import manager as daemon
from warren.errors import StorageError


class Captured:
    def __init__(self, status: int = 0) -> None:
        self.status = status
        self.calls: list[tuple[str, ManagerSettings, dict[str, Any]]] = []

    def run_init(
        self, settings: ManagerSettings, *, restore: str | None = None, restore_key: str | None = None
    ) -> int:
        self.calls.append(("init", settings, {"restore": restore, "restore_key": restore_key}))
        return self.status

    def run_join(self, settings: ManagerSettings, *, token: str | None, manager: str | None) -> int:
        self.calls.append(("join", settings, {"token": token, "manager": manager}))
        return self.status


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> Captured:
    fake = Captured()
    monkeypatch.setattr(daemon, "run_init", fake.run_init)
    monkeypatch.setattr(daemon, "run_join", fake.run_join)
    return fake


def test_init_without_flags_uses_config_defaults(captured: Captured) -> None:
    assert main(["cluster", "init"]) == 0
    assert captured.calls == [("init", ManagerSettings(), {"restore": None, "restore_key": None})]


def test_init_with_every_flag(captured: Captured) -> None:
    assert main([
        "cluster", "init", "--listen-addr", "0.0.0.0:9000", "--advertise-addr", "192.168.1.10:9000",
        "--raft-addr", "192.168.1.10:7000", "--metrics-addr", "0.0.0.0:9191", "--data-dir", "/tmp/w",
        "--manager-only", "--raft-heartbeat-timeout", "100ms", "--raft-election-timeout", "1s",
        "--raft-snapshot-threshold", "500", "--raft-log-keep", "0", "--restore", "backup.db",
        "--restore-key", "data.key", "--cert-expiry", "2h", "--allow-device", "/dev/ttyUSB0,/dev/null",
        "--allow-privileged", "--allow-bind", "/srv/data",
    ]) == 0
    [(kind, settings, extra)] = captured.calls
    assert kind == "init"
    assert extra == {"restore": "backup.db", "restore_key": "data.key"}
    assert settings == ManagerSettings(
        listen_addr="0.0.0.0:9000", advertise_addr="192.168.1.10:9000", raft_addr="192.168.1.10:7000",
        metrics_addr="0.0.0.0:9191", data_dir="/tmp/w", manager_only=True, node_cert_lifetime_s=7200.0,
        local_worker_allow_privileged=True, local_worker_allow_devices=("/dev/ttyUSB0", "/dev/null"),
        local_worker_allow_binds=("/srv/data",),
        raft=RaftSettings(heartbeat_interval_s=0.033, election_timeout_min_s=0.1, election_timeout_max_s=1.1,
                          snapshot_threshold=500, max_in_snapshot_log_to_keep=0),
    )


def test_election_timeout_alone_keeps_the_default_heartbeat(captured: Captured) -> None:
    assert main(["cluster", "init", "--raft-election-timeout", "500ms"]) == 0
    raft = captured.calls[0][1].raft
    assert (raft.heartbeat_interval_s, raft.election_timeout_min_s, raft.election_timeout_max_s) == (
        RaftSettings().heartbeat_interval_s, 0.15, 0.65)


def test_the_guides_wan_timers_mean_what_the_guide_says(captured: Captured) -> None:
    # HIGH-AVAILABILITY-GUIDE.md: `--raft-heartbeat-timeout 1s --raft-election-timeout 1s`, meant as
    # hashicorp/raft means them: a follower waits 1 s without a leader before it stands.
    assert main(["cluster", "init", "--raft-heartbeat-timeout", "1s", "--raft-election-timeout", "1s"]) == 0
    raft = captured.calls[0][1].raft
    assert (raft.heartbeat_interval_s, raft.election_timeout_min_s, raft.election_timeout_max_s) == (
        0.333, 1.0, 2.0)
    assert (raft.heartbeat_timeout_s, raft.election_timeout_s) == (1.0, 1.0)


def test_heartbeat_timeout_alone_sets_the_spread_to_it(captured: Captured) -> None:
    assert main(["cluster", "init", "--raft-heartbeat-timeout", "500ms"]) == 0
    raft = captured.calls[0][1].raft
    assert (raft.heartbeat_interval_s, raft.election_timeout_min_s, raft.election_timeout_max_s) == (
        0.167, 0.5, 1.0)


def test_default_timers_given_explicitly_are_the_defaults(captured: Captured) -> None:
    assert main(["cluster", "init", "--raft-heartbeat-timeout", "150ms",
                 "--raft-election-timeout", "150ms"]) == 0
    assert captured.calls[0][1].raft == RaftSettings()


def test_bare_hosts_get_default_ports(captured: Captured) -> None:
    assert main(["cluster", "init", "--listen-addr", "0.0.0.0:9000", "--advertise-addr", "10.0.0.1",
                 "--raft-addr", "10.0.0.2"]) == 0
    settings = captured.calls[0][1]
    assert settings.advertise_addr == "10.0.0.1:9000"  # the listen port
    assert settings.raft_addr == "10.0.0.2:7946"


def test_join_passes_token_and_manager(captured: Captured) -> None:
    assert main(["manager", "join", "--token", "SWMTKN-1-x", "--manager", "192.168.1.10:8080",
                 "--advertise-addr", "192.168.1.11:8080", "--data-dir", "/tmp/m2"]) == 0
    assert captured.calls == [(
        "join",
        ManagerSettings(advertise_addr="192.168.1.11:8080", data_dir="/tmp/m2"),
        {"token": "SWMTKN-1-x", "manager": "192.168.1.10:8080"},
    )]


def test_join_without_token_resumes(captured: Captured, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WARREN_MANAGER", "10.9.9.9:8080")  # a client setting: not a join target
    assert main(["manager", "join", "--data-dir", "/tmp/m2"]) == 0
    assert captured.calls[0][2] == {"token": None, "manager": None}


def test_join_accepts_manager_before_the_command(captured: Captured) -> None:
    assert main(["--manager", "10.0.0.1:8080", "manager", "join", "--token", "T"]) == 0
    assert captured.calls[0][2] == {"token": "T", "manager": "10.0.0.1:8080"}


def test_exit_status_is_the_daemons(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = Captured(status=3)
    monkeypatch.setattr(daemon, "run_init", fake.run_init)
    assert main(["cluster", "init"]) == 3


@pytest.mark.parametrize("argv", [["--raft-snapshot-threshold", "0"], ["--raft-snapshot-threshold", "x"],
                                  ["--raft-log-keep", "-1"]])
def test_bad_raft_counts_are_usage_errors(argv: list[str], captured: Captured) -> None:
    assert main(["cluster", "init", *argv]) == 2
    assert captured.calls == []


def test_invalid_settings_do_not_start_the_daemon(
    captured: Captured, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["cluster", "init", "--raft-heartbeat-timeout", "500ms",
                 "--raft-election-timeout", "200ms"]) == 2
    assert captured.calls == []
    err = capsys.readouterr().err
    assert err.startswith("warren: election_timeout_s (0.2 s) must be at least heartbeat_timeout_s (0.5 s): ")
    assert "split the vote" in err  # says why
    assert err.rstrip().endswith(
        "(heartbeat_timeout_s is --raft-heartbeat-timeout, election_timeout_s is --raft-election-timeout)")
    assert err.count("\n") == 1


def test_daemon_errors_are_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def failing(
        settings: ManagerSettings, *, restore: str | None = None, restore_key: str | None = None
    ) -> int:
        raise StorageError("data dir /x is not writable")

    monkeypatch.setattr(daemon, "run_init", failing)
    assert main(["cluster", "init"]) == 1
    assert capsys.readouterr().err == "warren: data dir /x is not writable\n"


def test_interrupt_exits_quietly(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    def interrupted(settings: ManagerSettings, *, token: str | None, manager: str | None) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(daemon, "run_join", interrupted)
    assert main(["manager", "join"]) == 130
    assert capsys.readouterr().err == ""


def test_a_bad_allowed_device_path_does_not_start_the_daemon(
    captured: Captured, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["cluster", "init", "--allow-device", "/dev/../etc"]) == 2
    assert captured.calls == []
    assert "allow_devices: '/dev/../etc' must be a normalised absolute path" in capsys.readouterr().err
    assert main(["manager", "join", "--token", "T", "--manager", "10.0.0.1:8080",
                 "--allow-bind", "/srv/.."]) == 2
    assert captured.calls == []
    assert "allow_binds: '/srv/..' must be a normalised absolute path" in capsys.readouterr().err
