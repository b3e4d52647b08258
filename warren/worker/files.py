"""Files the worker writes for its tasks (secrets, configs): replaced whole, removed quietly."""

from __future__ import annotations

import logging
import os
import shutil

log = logging.getLogger(__name__)

# A file being written ends with this until it is renamed into place.
TMP_SUFFIX = ".writing"


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
