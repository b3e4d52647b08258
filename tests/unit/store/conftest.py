"""The store tests' fixture: a fresh store behind a Log (tests/unit/store/log.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.store.log import Log
from warren.store.machine import Store


@pytest.fixture
def log(tmp_path: Path) -> Log:
    store = Store(str(tmp_path))
    store.restore(None)
    return Log(store)
