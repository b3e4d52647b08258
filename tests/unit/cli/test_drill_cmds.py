"""`warren drill`: the drill's settings, and the flags that build them (one line and exit 2 when bad)."""

from __future__ import annotations

import pytest

from warren.cli.main import build_parser, main
from warren.config import DrillSettings
from warren.errors import ConfigError


def test_default_settings_are_valid_and_run_processes() -> None:
    settings = DrillSettings()
    settings.validate()
    assert (settings.managers, settings.runtime, settings.kill) == (3, "process", "sigkill")
    assert DrillSettings(runtime="docker").service_image == "warren-busybox:latest"
    assert DrillSettings(runtime="docker", image="busybox:1").service_image == "busybox:1"


@pytest.mark.parametrize(("fields", "words"), [
    ({"managers": 4}, "managers must be 3 or 5"),
    ({"kill": "sighup"}, "kill must be one of sigkill, sigterm, sigstop"),
    ({"image": "busybox"}, "image applies to the docker runtime only"),
    ({"step_timeout_s": 0.0}, "step_timeout_s must be greater than 0"),
    ({"replicas": 3, "scaled_replicas": 3}, "must be at least 1 and less than scaled_replicas"),
])
def test_impossible_settings_are_refused(fields: dict[str, object], words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        DrillSettings(**fields).validate()  # type: ignore[arg-type]


def settings_from(*argv: str) -> DrillSettings:
    from warren.cli.drill_cmds import build_settings

    return build_settings(build_parser().parse_args(["drill", *argv]))


def test_flags_not_given_leave_the_defaults() -> None:
    assert settings_from() == DrillSettings()


def test_flags_become_settings() -> None:
    got = settings_from("--managers", "5", "--runtime", "docker", "--image", "img:1", "--kill", "sigstop",
                        "--step-timeout", "1m", "--data-dir", "/tmp/d", "--keep")
    assert got == DrillSettings(managers=5, runtime="docker", image="img:1", kill="sigstop",
                                step_timeout_s=60.0, data_dir="/tmp/d", keep=True)


@pytest.mark.parametrize(("argv", "words"), [
    (["--image", "busybox"], "--image applies to --runtime docker only"),
    (["--managers", "4"], "invalid choice: 4"),
    (["--step-timeout", "5"], "invalid duration '5'"),
    (["--step-timeout", "0s"], "--step-timeout must be greater than 0"),
])
def test_bad_flags_exit_2_with_one_line(
    argv: list[str], words: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["drill", *argv]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and words in err, err
