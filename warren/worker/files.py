"""Files the worker writes for its tasks (secrets, configs): replaced whole, removed quietly."""

from __future__ import annotations

import logging
import os
import re
import shutil
from collections.abc import Iterable

log = logging.getLogger(__name__)

# A file being written ends with this until it is renamed into place.
TMP_SUFFIX = ".writing"
# What a task ID must be to name a directory (matched whole).
TASK_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


def write_file(path: str, value: bytes, mode: int) -> None:
    """Replace the file at `path` with `value` at `mode` (written under a temporary name, then renamed:
    a read-only file of an earlier run cannot be opened for writing; no symlink is followed)."""
    tmp = path + TMP_SUFFIX
    if os.path.lexists(tmp):
        os.unlink(tmp)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        view = memoryview(value)
        while view:
            view = view[os.write(fd, view) :]
        os.fchmod(fd, mode)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def remove_path(path: str) -> None:
    """Remove a file, or a directory with what it holds (a symlink itself, never its target); gone
    already is fine, a failure is logged."""
    try:
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        log.warning("cannot remove %s: %s", path, exc)


def release_task_dir(base: str, task_id: str) -> None:
    """Remove task `task_id`'s directory under `base` (the task ended or left this worker)."""
    if not TASK_ID.fullmatch(task_id):
        return
    directory = os.path.join(base, task_id)
    if os.path.lexists(directory):
        remove_path(directory)


def clean_task_dirs(base: str, keep: Iterable[str]) -> int:
    """Remove the directory under `base` of every task not in `keep` (at start: tasks that ended while
    the worker was away); how many were removed."""
    kept = set(keep)
    try:
        entries = os.listdir(base)
    except FileNotFoundError:
        return 0
    removed = 0
    for entry in entries:
        if entry not in kept:
            remove_path(os.path.join(base, entry))
            removed += 1
    return removed
