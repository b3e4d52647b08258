"""`warren worker start`: the WorkerSettings the flags build, --help, and errors (one line; 2 for usage)."""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from warren.cli import worker_cmds
from warren.cli.main import main
from warren.config import MANAGER_ENV, WorkerSettings
from warren.pki import tokens
from warren.worker import daemon, identity
from warren.worker.identity import WorkerIdentity


class Captured:
    def __init__(self) -> None:
        self.calls: list[tuple[WorkerSettings, str | None]] = []

    def run_worker(self, settings: WorkerSettings, *, token: str | None) -> int:
        self.calls.append((settings, token))
        return 0


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> Captured:
    fake = Captured()
    monkeypatch.setattr(daemon, "run_worker", fake.run_worker)
    monkeypatch.delenv(MANAGER_ENV, raising=False)
    return fake


def test_every_flag(captured: Captured, tmp_path: Path) -> None:
    assert main(["worker", "start", "--token", "SWMTKN-1-x", "--manager", "10.0.0.1:8080, 10.0.0.2",
                 "--data-dir", str(tmp_path), "--runtime", "process", "--label", "zone=a",
                 "--label", "disk=ssd", "--label", "zone=b", "--advertise-host", "192.168.1.20",
                 "--allow-device", "/dev/ttyUSB0,/dev/video0", "--allow-device", "/dev/serial",
                 "--allow-bind", "/srv/data,/media", "--allow-bind", "/srv/data", "--allow-privileged"]) == 0
    assert captured.calls == [(
        WorkerSettings(managers=("10.0.0.1:8080", "10.0.0.2:8080"), data_dir=str(tmp_path), runtime="process",
                       labels=(("zone", "b"), ("disk", "ssd")), advertise_host="192.168.1.20",
                       allow_privileged=True, allow_devices=("/dev/ttyUSB0", "/dev/video0", "/dev/serial"),
                       allow_binds=("/srv/data", "/media")),
        "SWMTKN-1-x",
    )]


def test_defaults_come_from_config(captured: Captured, tmp_path: Path) -> None:
    assert main(["worker", "start", "--token", "T", "--data-dir", str(tmp_path)]) == 0
    assert captured.calls == [(WorkerSettings(data_dir=str(tmp_path)), "T")]


def test_manager_from_the_environment(
    captured: Captured, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(MANAGER_ENV, "10.1.1.1:9000,10.1.1.2:9000")
    assert main(["worker", "start", "--data-dir", str(tmp_path)]) == 0
    assert captured.calls[0][0].managers == ("10.1.1.1:9000", "10.1.1.2:9000")
    assert main(["worker", "start", "--data-dir", str(tmp_path), "--manager", "10.9.9.9:1"]) == 0
    assert captured.calls[1][0].managers == ("10.9.9.9:1",)  # the flag wins


def test_a_resumed_worker_finds_its_managers_in_node_json(captured: Captured, tmp_path: Path) -> None:
    identity.save(str(tmp_path), WorkerIdentity("worker-1", "s", "c", ("10.2.2.2:8080", "10.2.2.3:8080")))
    assert main(["worker", "start", "--data-dir", str(tmp_path)]) == 0
    assert captured.calls == [(WorkerSettings(managers=("10.2.2.2:8080", "10.2.2.3:8080"),
                                              data_dir=str(tmp_path)), None)]


@pytest.mark.parametrize(
    ("flag", "dns_addr"),
    [("off", None), ("OFF", None), ("10.0.0.5:53", "10.0.0.5:53"), ("[::1]:0", "[::1]:0")],
)
def test_dns_addr_takes_an_address_or_off(
    captured: Captured, tmp_path: Path, flag: str, dns_addr: str | None
) -> None:
    argv = ["worker", "start", "--token", "SWMTKN-1-x", "--data-dir", str(tmp_path), "--dns-addr", flag]
    assert main(argv) == 0
    [(settings, _)] = captured.calls
    assert settings.dns_addr == dns_addr
    assert WorkerSettings().dns_addr == "127.0.0.1:0"  # the default: any free port on loopback


@pytest.mark.parametrize(
    ("flag", "ingress_host"),
    [("off", None), ("Off", None), ("10.0.0.5", "10.0.0.5"), ("::", "::"), ("0.0.0.0", "0.0.0.0")],
)
def test_ingress_host_takes_an_address_or_off(
    captured: Captured, tmp_path: Path, flag: str, ingress_host: str | None
) -> None:
    argv = ["worker", "start", "--token", "SWMTKN-1-x", "--data-dir", str(tmp_path), "--ingress-host", flag]
    assert main(argv) == 0
    [(settings, _)] = captured.calls
    assert settings.ingress_host == ingress_host
    assert WorkerSettings().ingress_host == "0.0.0.0"  # the default: every IPv4 address


@pytest.mark.parametrize(
    ("flag", "network", "name"),
    [("off", None, None), ("Off", None, None), ("warren-{node}", "warren-{node}", "warren-worker-1a2b3c"),
     ("edge.net", "edge.net", "edge.net"), ("n-{node}-x", "n-{node}-x", "n-worker-1a2b3c-x")],
)
def test_docker_network_takes_a_name_template_or_off(
    captured: Captured, tmp_path: Path, flag: str, network: str | None, name: str | None
) -> None:
    argv = ["worker", "start", "--token", "SWMTKN-1-x", "--data-dir", str(tmp_path), "--docker-network", flag]
    assert main(argv) == 0
    [(settings, _)] = captured.calls
    assert settings.docker_network == network
    assert settings.docker_network_name("worker-1a2b3c") == name
    assert WorkerSettings().docker_network == "warren-{node}"  # the default: one network per node


def test_help_explains_flags_and_what_sigterm_does(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["worker", "start", "--help"]) == 0
    out = capsys.readouterr().out
    for flag in ("--token", "--manager", "--data-dir", "--runtime", "--label", "--advertise-host",
                 "--allow-device", "--allow-bind", "--allow-privileged", "--dns-addr", "--ingress-host",
                 "--docker-network"):
        assert flag in out
    assert "keep running" in out and "warren node drain" in out and MANAGER_ENV in out
    assert main(["worker", "--help"]) == 0
    assert "start" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--runtime", "vm"], "invalid choice"),
        (["--label", "novalue"], "expected KEY=VALUE"),
        (["--label=-bad=1"], "not a valid label key"),
        (["--manager", "bad host:1"], "not a host name or IP address"),
        (["--manager", ","], "names no manager"),
        (["--advertise-host", "10.0.0.1:80"], "without a port"),
        (["--allow-device", "/dev/../etc"], "allow_devices: '/dev/../etc' must be a normalised absolute"),
        (["--allow-device", "dev/ttyUSB0"], "must be a normalised absolute path"),
        (["--allow-device", "/dev/serial/"], "must be a normalised absolute path"),
        (["--allow-device", "/dev/tty\x1b"], "must be a normalised absolute path"),
        (["--allow-bind", "/srv/../etc"], "allow_binds: '/srv/../etc' must be a normalised absolute"),
        (["--allow-bind", "srv/data"], "allow_binds: 'srv/data' must be a normalised absolute"),
        (["--allow-bind", "/srv//data"], "must be a normalised absolute path"),
        (["--allow-bind", ",".join(f"/srv/{i}" for i in range(65))], "allow_binds: at most 64 paths, got 65"),
        (["--dns-addr", "localhost:53"], "dns_addr 'localhost:53' must be IP:PORT"),
        (["--dns-addr", "127.0.0.1"], "must be IP:PORT with a port from 0 to 65535"),
        (["--dns-addr", "127.0.0.1:70000"], "must be IP:PORT with a port from 0 to 65535"),
        (["--ingress-host", "localhost"], "ingress_host 'localhost' must be an IP address"),
        (["--ingress-host", "10.0.0.1:80"], "ingress_host '10.0.0.1:80' must be an IP address"),
        (["--docker-network", "my net"], "docker_network 'my net' must be a Docker network name"),
        (["--docker-network", "warren-{name}"], "must be a Docker network name"),
        (["--docker-network", ""], "must be a Docker network name"),
        (["--docker-network", "n" * 65], "at most 64 characters"),
        (["--docker-network", "bridge"], "not be one of bridge, host, none"),
        (["--docker-network=-{node}"], "must begin with a letter or digit"),
        (["--bogus"], "unrecognized arguments"),
    ],
)
def test_usage_errors_exit_2_with_one_line(
    captured: Captured, capsys: pytest.CaptureFixture[str], tmp_path: Path, argv: list[str], message: str
) -> None:
    assert main(["worker", "start", "--data-dir", str(tmp_path), *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("warren: ") and message in err and err.count("\n") == 1
    assert not captured.calls


def test_no_token_on_a_fresh_data_dir_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv(MANAGER_ENV, raising=False)
    assert main(["worker", "start", "--data-dir", str(tmp_path / "w"), "--runtime", "process"]) == 2
    err = capsys.readouterr().err
    assert "joining needs --token" in err and err.count("\n") == 1


@pytest.fixture
def root_logger() -> Iterator[None]:
    """run_worker sets up daemon logging on the root logger; put it back afterwards."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.usefixtures("root_logger")
def test_no_manager_answering_the_join_exits_1(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    build = worker_cmds.build_settings
    monkeypatch.setattr(worker_cmds, "build_settings",
                        # Shorter than any attempt: the first refusal ends it (the jittered pause before a
                        # second attempt could otherwise fit, and log a retry line).
                        lambda args: dataclasses.replace(build(args), join_timeout_s=1e-6))
    closed = "127.0.0.1:1"  # nothing listens on port 1
    token = tokens.mint("z" * 50)  # well formed: the CA fetch is tried (and finds nobody)
    assert main(["worker", "start", "--token", token, "--manager", closed, "--data-dir", str(tmp_path / "w"),
                 "--runtime", "process"]) == 1
    err = capsys.readouterr().err
    assert "could not join" in err and "127.0.0.1:1" in err and token not in err and err.count("\n") == 1
    assert not os.path.exists(tmp_path / "w" / "tls")


@pytest.mark.usefixtures("root_logger")
def test_a_malformed_token_exits_1_with_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    token = "SWMTKN-1-" + "z" * 50  # the form before tokens pinned the CA
    assert main(["worker", "start", "--token", token, "--manager", "127.0.0.1:1", "--data-dir",
                 str(tmp_path / "w"), "--runtime", "process"]) == 1
    err = capsys.readouterr().err
    assert "invalid join token (expected SWMTKN-1-<CA digest>-<secret>)" in err and err.count("\n") == 1
    assert token not in err


@pytest.mark.usefixtures("root_logger")
def test_a_data_dir_from_before_tls_exits_1_saying_to_join_again(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    identity.save(str(tmp_path), WorkerIdentity("worker-1", "s", "c", ("127.0.0.1:1",)))
    assert main(["worker", "start", "--data-dir", str(tmp_path), "--runtime", "process"]) == 1
    err = capsys.readouterr().err
    assert "no TLS certificate" in err and "join this worker again with a new token" in err
    assert err.count("\n") == 1
