"""Files that must survive: fsync of a file and of a directory entry, a small file replaced atomically,
and a node's private data dir."""

from __future__ import annotations

import os

from warren.errors import ConfigError


def fsync_file(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(directory: str) -> None:
    """After creating or renaming a file in `directory`: make that change durable (POSIX)."""
    fsync_file(directory)


def read_if_exists(path: str) -> bytes | None:
    """The file's contents, or None if there is no such file."""
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return None


def write_atomically(path: str, data: bytes, *, sync: bool = True) -> None:
    """Replace `path` with `data`, readable by its owner only: temp file, fsync, rename, fsync the dir,
    so a crash leaves the old or the new file, never a torn one.

    `sync=False` leaves out both fsyncs (about 7 ms together on a busy disk, on the caller's thread):
    a crash of the process still leaves the old or the new file (the rename is atomic and the page
    cache outlives the process), only a crash of the machine may lose the change. For files whose
    contents die with the machine anyway (a process task's pid) or that a manager sends again (the
    service endpoints), that is all the durability there is to have."""
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        os.fchmod(fd, 0o600)  # an old temp file left by a crash may have other bits
        f.write(data)
        f.flush()
        if sync:
            os.fsync(fd)
    os.replace(tmp, path)
    if sync:
        fsync_dir(os.path.dirname(os.path.abspath(path)))


def private_data_dir(data_dir: str) -> str:
    """Create `data_dir` for this user only, make everything the process creates private too (state
    with token and secret digests, node.json with its secret, Raft log, task files), and return its
    absolute path. The umask is process-wide, which is what a daemon wants."""
    os.umask(0o077)
    path = os.path.abspath(data_dir)
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create data dir {path}: {exc.strerror or exc}") from None
    return path
