"""The worker's memory budget (≤ 40 MB idle, benches `footprint`; see also test_lazy_imports.py):
building the CLI and starting a daemon must not load the API's pydantic models or YAML, which only
spec-checking commands need."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[3]

PROBE = """
import sys
from warren.cli.main import build_parser
import warren.worker.daemon, warren.runtime.docker, warren.runtime.process
build_parser().parse_args(["worker", "start", "--token", "x", "--manager", "127.0.0.1:1"])
print(sorted(m for m in ("pydantic", "yaml", "warren.api.models", "fastapi") if m in sys.modules))
"""


def test_daemon_path_leaves_pydantic_and_yaml_unloaded() -> None:
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_spec_commands_still_check_specs_with_the_api_models() -> None:
    probe = (
        "from warren.cli.main import build_parser\n"
        "import sys\n"
        "try:\n"
        "    build_parser().parse_args(['service', 'create', 'x', '--image', 'i', '--constraint', 'bogus'])\n"
        "except Exception as exc:\n"
        "    print(type(exc).__name__, 'pydantic' in sys.modules, exc)\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert done.stdout.startswith("UsageError True argument --constraint: expected node.labels.KEY==VALUE")


def test_a_client_command_talks_tls_without_loading_cryptography() -> None:
    # The CLI verifies managers with the ssl module alone; the `cryptography` package (about 80 ms and
    # 10 MB) is loaded only to make keys, or to tell several clusters' credentials apart.
    probe = (
        "import sys\n"
        "from warren.cli.main import build_parser\n"
        "from warren.client import ManagerClient\n"
        "from warren.pki import material\n"
        "build_parser().parse_args(['node', 'list', '--manager', '127.0.0.1:1'])\n"
        "material.client_context(open(sys.argv[1], 'rb').read(), None)\n"
        "print('cryptography' in sys.modules)\n"
    )
    ca = REPO_ROOT / "rust" / "tests" / "fixtures" / "ca.pem"
    done = subprocess.run([sys.executable, "-c", probe, str(ca)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"
