"""Shared helpers of the unit tests: optional native modules are skipped locally, required in CI."""

from __future__ import annotations

import importlib
import os
from types import ModuleType

import pytest


def require_module(name: str, why: str) -> ModuleType:
    """Import `name`, or skip the test with `why`; under CI a missing module fails the test instead,
    so a broken build cannot pass as a run of skips."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        message = f"{name} is not importable ({exc}); {why}"
        if os.environ.get("CI"):
            pytest.fail(f"{message} [CI must build it: make install]")
        pytest.skip(message)


@pytest.fixture
def raft() -> ModuleType:
    """The `warren_raft` extension module (built by `make install` from rust/)."""
    return require_module("warren_raft", "build the Rust core with `make install` to run this test")


@pytest.fixture
def compiled_bridge() -> ModuleType:
    """The Cython bridge `warren._raft` (compiled by `pip install -e .`, i.e. `make install`). Without a
    build, `warren._raft` is still importable, as the pure source under its symlink: that is no
    compiled bridge, and is skipped (failed under CI) like a missing one."""
    why = "compile it with `make install` or `python setup.py build_ext --inplace`"
    module = require_module("warren._raft", why)
    if not module.COMPILED:
        if os.environ.get("CI"):
            pytest.fail(f"warren._raft is not compiled; {why} [CI must build it: make install]")
        pytest.skip(f"warren._raft is not compiled; {why}")
    return module
