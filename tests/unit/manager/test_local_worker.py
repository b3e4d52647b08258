"""The hybrid manager's local worker takes the host access of `cluster init`/`manager join`."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

from warren.config import ManagerSettings
from warren.manager.local_worker import WORKER_DIR, LocalWorker


def test_the_local_worker_allows_what_the_manager_was_started_with(tmp_path: Path) -> None:
    settings = ManagerSettings(local_worker_runtime="process", local_worker_allow_privileged=True,
                               local_worker_allow_devices=("/dev/null",),
                               local_worker_allow_binds=("/srv/data", "/media"))
    worker = LocalWorker(settings, str(tmp_path), "127.0.0.1:4242", cast(Any, None)).settings
    assert worker.runtime == "process" and worker.data_dir == str(tmp_path / WORKER_DIR)
    assert worker.allow_privileged is True and worker.allow_devices == ("/dev/null",)
    assert worker.allow_binds == ("/srv/data", "/media")
