"""Fixtures shared by the manager integration tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

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
