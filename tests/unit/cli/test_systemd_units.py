"""packaging/systemd: the units parse, systemd accepts them, and every command line they can run (with
the example settings of their /etc/default files) is one `warren` accepts."""

from __future__ import annotations

import configparser
import itertools
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from warren.cli.main import build_parser

UNITS = Path(__file__).resolve().parents[3] / "packaging" / "systemd"
WARREN = "/usr/local/bin/warren"
# name -> (unit file, its example /etc/default file)
SERVICES = {
    "warren-manager": ("warren-manager.service", "warren-manager.default"),
    "warren-worker": ("warren-worker.service", "warren-worker.default"),
}


def _unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # systemd keys are case-sensitive
    parser.read_string((UNITS / SERVICES[name][0]).read_text())
    return parser


def _examples(name: str) -> dict[str, list[str]]:
    """Every value the environment file shows for each variable (commented out: they are examples)."""
    found: dict[str, list[str]] = {}
    for line in (UNITS / SERVICES[name][1]).read_text().splitlines():
        match = re.fullmatch(r"#?(WARREN_[A-Z_]+)=(.*)", line)
        if match:
            found.setdefault(match.group(1), []).append(match.group(2))
    return found


def _unit_environment(unit: configparser.ConfigParser) -> dict[str, str]:
    env = {}
    if "Environment" in unit["Service"]:
        for assignment in re.findall(r'"([^"]*)"|(\S+)', unit["Service"]["Environment"]):
            key, _, value = (assignment[0] or assignment[1]).partition("=")
            env[key] = value
    return env


def _argv(exec_start: str, env: dict[str, str]) -> list[str]:
    """ExecStart's arguments as systemd makes them: a bare $VAR is split at whitespace, an unset one
    disappears."""
    words = exec_start.split()
    assert words[0] == WARREN
    argv: list[str] = []
    for word in words[1:]:
        argv += env.get(word[1:], "").split() if word.startswith("$") else [word]
    return argv


@pytest.mark.parametrize("name", SERVICES)
def test_the_unit_runs_warren_as_root_restarting_on_failure(name: str) -> None:
    unit = _unit(name)
    service = unit["Service"]
    assert service["ExecStart"].startswith(WARREN + " ")
    assert service["EnvironmentFile"] == f"-/etc/default/{name}"  # "-": optional
    assert service["Restart"] == "on-failure"
    assert int(service["LimitNOFILE"]) >= 65536
    assert "User" not in service  # root: data in /var/lib/warren, Warren's default for root
    assert unit["Install"]["WantedBy"] == "multi-user.target"


@pytest.mark.parametrize("name", SERVICES)
def test_every_example_command_line_is_accepted(name: str) -> None:
    unit = _unit(name)
    examples = _examples(name)
    assert examples, f"{SERVICES[name][1]} shows no example"
    defaults = _unit_environment(unit)
    names = sorted(examples)
    for values in itertools.product(*(examples[n] for n in names)):
        # The unit's defaults alone (an empty file), then every combination of the examples.
        for env in (defaults, {**defaults, **dict(zip(names, values, strict=True))}):
            argv = _argv(unit["Service"]["ExecStart"], env)
            args = build_parser().parse_args(argv)
            assert getattr(args, "daemon_handler", None) is not None, argv


def test_the_manager_unit_founds_a_cluster_unless_told_to_join() -> None:
    unit = _unit("warren-manager")
    assert _argv(unit["Service"]["ExecStart"], _unit_environment(unit)) == ["cluster", "init"]
    assert "manager join --token" in " ".join(_examples("warren-manager")["WARREN_MANAGER_COMMAND"])


def test_the_worker_unit_takes_its_managers_from_the_environment() -> None:
    assert "WARREN_MANAGER" in _examples("warren-worker")  # read by `warren worker start`
    from warren.config import MANAGER_ENV

    assert MANAGER_ENV == "WARREN_MANAGER"


def test_systemd_accepts_the_units(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (Debian's systemd package has it)")
    # verify checks that ExecStart's program exists: point it at this environment's `warren`.
    script = Path(sys.executable).parent / "warren"
    if not script.exists():
        script = tmp_path / "warren"
        script.write_text("#!/bin/sh\n")
        script.chmod(0o755)
    for unit_file, _ in SERVICES.values():
        text = (UNITS / unit_file).read_text()
        (tmp_path / unit_file).write_text(text.replace(WARREN, str(script)))
    done = subprocess.run(
        [analyze, "verify", *(str(tmp_path / unit) for unit, _ in SERVICES.values())],
        capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == "", done.stderr  # unknown keys and bad values are only warnings
