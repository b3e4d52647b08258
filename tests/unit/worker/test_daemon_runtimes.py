"""Which runtimes a worker offers: the process runtime runs unconfined host commands as the worker's
user, so it is offered only when named (`--runtime process` or `docker,process`); `auto` = Docker."""

from __future__ import annotations

from pathlib import Path

import pytest

import warren.runtime as runtime_pkg
from warren.cli.main import main
from warren.config import RUNTIMES, WorkerSettings
from warren.errors import ConfigError
from warren.runtime import drivers_of, open_runtimes
from warren.worker import daemon


def engine(monkeypatch: pytest.MonkeyPatch, *, answers: bool) -> None:
    monkeypatch.setattr(runtime_pkg, "docker_available", lambda timeout_s=None: answers)


def test_auto_means_docker_and_process_is_offered_only_when_named() -> None:
    assert drivers_of("auto") == ("docker",)
    assert drivers_of("docker") == ("docker",)
    assert drivers_of("process") == ("process",)
    assert drivers_of("docker,process") == ("docker", "process")
    assert [k for k in RUNTIMES if "process" in drivers_of(k)] == ["process", "docker,process"]
    with pytest.raises(ConfigError, match="runtime must be one of"):
        drivers_of("process,docker,vm")


def test_auto_without_an_engine_refuses_rather_than_falling_back_to_processes(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    engine(monkeypatch, answers=False)
    for kind in ("auto", "docker", "docker,process"):
        with pytest.raises(ConfigError, match="--runtime process"):
            open_runtimes(kind, cluster_id="c", node="n", data_dir=str(tmp_path))
    (only,) = open_runtimes("process", cluster_id="c", node="n", data_dir=str(tmp_path))
    assert only.driver == "process"


def test_auto_with_an_engine_opens_docker_alone(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    engine(monkeypatch, answers=True)
    auto = open_runtimes("auto", cluster_id="c", node="n", data_dir=str(tmp_path))
    assert [rt.driver for rt in auto] == ["docker"]
    both = open_runtimes("docker,process", cluster_id="c", node="n", data_dir=str(tmp_path))
    assert [rt.driver for rt in both] == ["docker", "process"]


async def test_a_joining_worker_announces_only_the_drivers_asked_for(monkeypatch: pytest.MonkeyPatch) -> None:
    engine(monkeypatch, answers=True)
    assert await daemon._planned_drivers("auto", None) == ["docker"]
    assert await daemon._planned_drivers("process", None) == ["process"]
    assert await daemon._planned_drivers("docker,process", None) == ["docker", "process"]
    engine(monkeypatch, answers=False)
    with pytest.raises(ConfigError, match="Docker Engine does not answer"):  # before it joins
        await daemon._planned_drivers("auto", None)
    assert await daemon._planned_drivers("process", None) == ["process"]


def test_the_cli_takes_docker_comma_process_and_defaults_to_auto(tmp_path: Path) -> None:
    assert WorkerSettings().runtime == "auto"
    WorkerSettings(runtime="docker,process").validate()
    # No identity in the data dir and no token: a usage error, after the flag was accepted.
    assert main(["worker", "start", "--data-dir", str(tmp_path), "--runtime", "docker,process"]) == 2
