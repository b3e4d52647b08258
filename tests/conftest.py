"""Shared pytest setup: the `integration` marker, the loop of async tests and multi-process cluster fixtures.

Everything under tests/integration/ is marked `integration` (select or skip it with `-m`). Cluster
fixtures kill every node they started at teardown, pass or fail, and print the nodes' log tails when
the test failed.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
INTEGRATION_DIR = REPO_ROOT / "tests" / "integration"

# The node processes run `python -m tests.integration.raftnode` from the repo root; the tests import the
# same harness module by that name, which with --import-mode=importlib needs the root on sys.path.
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from tests.integration.cluster import Cluster, NodeOptions  # noqa: E402

# Every cluster a test starts writes its admin certificate here, never into the user's ~/.config; the
# CLI processes the tests run (and the in-process API clients) find them here.
os.environ["WARREN_CONFIG_DIR"] = tempfile.mkdtemp(prefix="warren-test-config-")


def pytest_configure(config: pytest.Config) -> None:
    if not any(str(line).startswith("integration:") for line in config.getini("markers")):
        config.addinivalue_line("markers", "integration: starts real processes on loopback; slower")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if INTEGRATION_DIR in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.integration)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    setattr(item, f"rep_{report.when}", report)  # read by fixtures at teardown to dump node logs
    return report


def _failed(request: pytest.FixtureRequest) -> bool:
    return any(
        getattr(getattr(request.node, f"rep_{when}", None), "failed", False) for when in ("setup", "call")
    )


@pytest.fixture
def make_cluster(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Callable[..., Cluster]]:
    """Factory: `make_cluster(snapshot_threshold=50, keep=5)` -> a Cluster with those node options."""
    clusters: list[Cluster] = []

    def make(**options: Any) -> Cluster:
        c = Cluster(tmp_path / f"cluster{len(clusters)}", NodeOptions(**options))
        clusters.append(c)
        return c

    try:
        yield make
    finally:
        for c in clusters:
            try:
                if _failed(request):
                    print(f"\n==== node logs of {c.base_dir} ====\n{c.log_tails(60)}")
            finally:
                c.close()


@pytest.fixture
def cluster(make_cluster: Callable[..., Cluster]) -> Cluster:
    """A Cluster with the default test timers (heartbeat 50 ms, election 150-300 ms); no node started."""
    return make_cluster()


@pytest.fixture
def anyio_backend() -> str:
    """The loop every async test runs on (anyio_mode = "auto" in pyproject.toml): asyncio's own. A module
    that tests what the daemons run on overrides it with ("asyncio", {"use_uvloop": True})."""
    return "asyncio"
