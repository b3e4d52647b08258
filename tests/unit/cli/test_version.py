"""`warren --version`: what it reports, where the versions come from, and that it stays light."""

from __future__ import annotations

import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from types import ModuleType

import pytest

import warren
from warren.cli import version

REPO_ROOT = Path(__file__).resolve().parents[3]


def test_the_package_version_is_the_installed_distribution_s(raft: ModuleType) -> None:
    # warren.__version__ (API title, User-Agent, help text) and pyproject.toml's version move together.
    assert metadata.version("warren-orchestrator") == warren.__version__
    assert metadata.version("warren-raft") == raft.__version__


def test_openraft_version_is_the_one_cargo_lock_resolved(raft: ModuleType) -> None:
    lock = (REPO_ROOT / "Cargo.lock").read_text()
    found = re.search(r'^name = "openraft"\nversion = "([^"]+)"$', lock, re.MULTILINE)
    assert found is not None
    assert raft.OPENRAFT_VERSION == found.group(1)


def test_the_core_s_pin_is_the_core_s_version() -> None:
    requires = metadata.requires("warren-orchestrator") or []
    assert f"warren-raft=={metadata.version('warren-raft')}" in requires


def test_a_source_tree_without_metadata_says_so(monkeypatch: pytest.MonkeyPatch, raft: ModuleType) -> None:
    def missing(name: str) -> str:
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "version", missing)
    lines = version.version_text().splitlines()
    assert lines == [
        f"warren {warren.__version__} (from {warren.__path__[0]}; warren-orchestrator not installed)",
        f"warren-raft {raft.__version__}",
        f"openraft {raft.OPENRAFT_VERSION}",
    ]


def test_a_missing_core_is_reported_not_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "warren_raft", None)  # makes `import warren_raft` fail
    lines = version.version_text().splitlines()
    assert lines[1:] == ["warren-raft not installed", "openraft unknown"]


PROBE = """
import sys
sys.argv = ["warren", "--version"]
from warren.cli.entry import main
status = main()
heavy = ("httpx", "pydantic", "yaml", "fastapi", "cryptography", "docker", "warren.cli.main", "warren.config")
print(status, sorted(m for m in heavy if m in sys.modules))
"""


def test_version_loads_neither_the_command_tree_nor_its_libraries(raft: ModuleType) -> None:
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    *printed, probe = done.stdout.splitlines()
    assert printed == version.version_text().splitlines()
    assert probe == "0 []"


def test_the_installed_command_answers(raft: ModuleType) -> None:
    script = Path(sys.executable).parent / "warren"
    if not script.exists():
        pytest.skip(f"no `warren` script beside {sys.executable} (not installed in this environment)")
    done = subprocess.run([str(script), "--version"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout == version.version_text() + "\n"
