"""fsync helpers: a file's bytes, and a directory entry (so a rename or a new file survives a crash)."""

from __future__ import annotations

import os


def fsync_file(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(directory: str) -> None:
    """After creating or renaming a file in `directory`: make that change durable (POSIX)."""
    fsync_file(directory)
