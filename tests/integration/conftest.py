"""Fixtures shared by the manager integration tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.integration.managers import ManagerCluster, manager_clusters


@pytest.fixture
def make_managers(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Callable[..., ManagerCluster]]:
    """Factory of manager clusters; every manager is killed at teardown, logs printed if the test failed."""
    with manager_clusters(tmp_path, request) as make:
        yield make
