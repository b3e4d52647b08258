"""Fixtures shared by the integration tests: manager clusters, and the Docker Engine."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.images import ensure_image
from tests.integration.managers import ManagerCluster, ManagerProc, manager_clusters


@pytest.fixture
def make_managers(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Callable[..., ManagerCluster]]:
    """Factory of manager clusters; every manager is killed at teardown, logs printed if the test failed."""
    with manager_clusters(tmp_path, request) as make:
        yield make


@pytest.fixture(scope="module")
def lone_manager(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[ManagerProc]:
    """One single-manager cluster shared by a test module (API-level tests that need no failures)."""
    with manager_clusters(tmp_path_factory.mktemp("lone"), request) as make:
        yield make().init()


@pytest.fixture(scope="module")
def engine() -> Iterator[Any]:
    """The local Docker Engine's client with the test image built; skipped without one (failed in CI)."""
    import docker

    try:
        client = docker.from_env(timeout=10)
        client.ping()
    except Exception as exc:  # any failure to reach the engine means "no Docker here"
        if os.environ.get("CI"):
            pytest.fail(f"CI must reach the Docker Engine: {exc}")
        pytest.skip(f"no Docker Engine answers: {exc}")
    ensure_image()
    yield client
    client.close()


@pytest.fixture(autouse=True, scope="module")
def _remove_idle_cluster_networks() -> Iterator[None]:
    """After each module: remove the Docker networks Warren's workers made (labelled io.warren.cluster)
    that no container uses any more. A worker leaves its network when it stops, and managers running
    tasks (hybrid) have no Fleet to remove theirs: left, they would use up Docker's address pools (about
    30 bridge networks) over the suite, and later workers would run without a cluster network."""
    yield
    from tests.integration.workers import remove_idle_networks

    remove_idle_networks()
