"""The reconciler tests' simulated cluster (sim.py), fresh for each test."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.reconciler.sim import Sim


@pytest.fixture
def sim(tmp_path: Path) -> Sim:
    return Sim(tmp_path)
