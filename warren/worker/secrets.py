"""The secrets of a worker's tasks: values in memory, and one directory per task on tmpfs.

The leader sends a worker, with its assignments, the values of the secrets its tasks use and no
others (docs/worker-protocol.md). They are kept in this process's memory only: never in worker.db,
never in a file on a disk. To start a task that uses secrets, its values are written to
`<base>/<task id>/<NAME>`, where `<base>` (WorkerSettings.secrets_dir, by default
`/dev/shm/warren-<uid>/<node>`) must be on tmpfs or ramfs and reached through directories only root
or this user can change; otherwise the task fails with a message saying why, and nothing falls back
to a disk. A process task reads the files through `$WARREN_SECRETS_DIR` (mode 0400); a container
gets the directory bind-mounted read-only at `/run/secrets` (mode 0444: the container's user is
often not the worker's; the base directory, 0700, keeps other users of the host out).

A task's directory is removed when the task ends (or leaves the worker), and directories of tasks the
worker no longer knows are removed when it starts. A worker restarted while cut off from every
manager has no values in memory: it keeps the directories of the tasks it adopts, and a task whose
directory already holds its files can start again from them.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import re
import stat
from collections.abc import Iterable, Mapping, Sequence

from warren.formats import NAME_PATTERN
from warren.runtime.base import RuntimeStartError
from warren.worker.files import TASK_ID, clean_task_dirs, release_task_dir, remove_path, write_file

log = logging.getLogger(__name__)

# Filesystems whose files live in memory (and in swap at worst), never on a disk of their own.
RAM_FILESYSTEMS = frozenset({"tmpfs", "ramfs"})
MOUNTS_FILE = "/proc/self/mounts"
# Modes of a task's directory and files: a process task runs as the worker's user; a container's user
# may be any (Docker's own secrets are 0444 too).
PRIVATE_DIR, PRIVATE_FILE = 0o700, 0o400
SHARED_DIR, SHARED_FILE = 0o755, 0o444

_NAME = re.compile(NAME_PATTERN)
# Task IDs become directory names (Warren mints them; this refuses anything that could leave `base`).


class SecretsUnavailableError(RuntimeStartError):
    """A task's secrets cannot be given to it; the message (the task's failure) says why and names the
    secrets, never a value."""


def filesystem_of(path: str, mounts_file: str = MOUNTS_FILE) -> str | None:
    """The type of the filesystem `path` (an existing, resolved path) is on, from the mount table;
    None if it cannot be read."""
    try:
        with open(mounts_file, encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    best, fstype = "", None
    for line in lines:
        fields = line.split()
        if len(fields) < 3:
            continue
        # The mount table escapes spaces and a few other characters as \\ooo.
        point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[1])
        inside = path == point or path.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):  # the last of equal mounts is the one on top
            best, fstype = point, fields[2]
    return fstype


class TaskSecrets:
    """The values (memory) and task directories (tmpfs) of one worker's secrets."""

    def __init__(self, base_dir: str, *, mounts_file: str = MOUNTS_FILE) -> None:
        self.base_dir = os.path.abspath(base_dir)
        self.mounts_file = mounts_file
        self._values: dict[str, bytes] = {}
        self._checked = False

    def __repr__(self) -> str:  # never the values
        return f"TaskSecrets({self.base_dir!r}, {len(self._values)} values)"

    # -- values ---------------------------------------------------------------------------------------

    def replace(self, values: Mapping[str, object]) -> None:
        """The values (base64) of a session answer: exactly the secrets this worker's tasks use now."""
        fresh: dict[str, bytes] = {}
        for name, data in values.items():
            if not isinstance(data, str) or not _NAME.fullmatch(str(name)):
                log.warning("a manager sent secret %r in a form this worker does not read; ignored", name)
                continue
            try:
                fresh[str(name)] = base64.b64decode(data.encode("ascii"), validate=True)
            except (binascii.Error, UnicodeEncodeError, ValueError):
                log.warning("a manager sent secret %s not in base64; ignored", name)
        self._values = fresh

    def missing(self, names: Iterable[str]) -> set[str]:
        """Which of `names` this worker holds no value of."""
        return {n for n in names if n not in self._values}

    # -- task directories -----------------------------------------------------------------------------

    def task_dir(self, task_id: str) -> str:
        if not TASK_ID.fullmatch(task_id):
            raise SecretsUnavailableError(f"task ID {task_id!r} cannot name a secrets directory")
        return os.path.join(self.base_dir, task_id)

    def prepare(self, task_id: str, names: Sequence[str], *, shared: bool) -> str | None:
        """Write the task's secrets into its directory and return it (None: the task uses none).
        SecretsUnavailableError if the base is not in memory or a value is missing."""
        if not names:
            return None
        bad = [n for n in names if not _NAME.fullmatch(n)]
        if bad:
            raise SecretsUnavailableError(f"invalid secret names {bad}")
        directory = self.task_dir(task_id)
        self._check_base()
        try:
            os.makedirs(self.base_dir, mode=PRIVATE_DIR, exist_ok=True)
            self._check_base_owner()
            if os.path.isdir(directory) and not os.path.islink(directory):
                os.chmod(directory, PRIVATE_DIR)  # left by an earlier start of the task
            else:
                os.mkdir(directory, PRIVATE_DIR)
            absent = []
            for name in names:
                path = os.path.join(directory, name)
                value = self._values.get(name)
                if value is not None:
                    write_file(path, value, SHARED_FILE if shared else PRIVATE_FILE)
                elif os.path.isfile(path) and not os.path.islink(path):
                    os.chmod(path, SHARED_FILE if shared else PRIVATE_FILE)  # left by an earlier run
                else:
                    absent.append(name)
            for entry in os.listdir(directory):
                if entry not in names:
                    remove_path(os.path.join(directory, entry))
            os.chmod(directory, SHARED_DIR if shared else PRIVATE_DIR)
        except OSError as exc:
            raise SecretsUnavailableError(
                f"cannot write the task's secrets to {directory}: {exc.strerror or exc}"
            ) from None
        if absent:
            raise SecretsUnavailableError(
                f"this worker was not given the value of secret {', '.join(absent)}: it does not exist "
                "(removed, or not restored after a backup restore), could not be opened by the leader, "
                "or no manager has answered since the worker started"
            )
        return directory

    def release(self, task_id: str) -> None:
        """Remove the task's directory (the task ended or left this worker)."""
        release_task_dir(self.base_dir, task_id)

    def clean(self, keep: Iterable[str]) -> int:
        """Remove the directory of every task not in `keep` (at start: tasks that ended while the
        worker was away); how many were removed."""
        removed = clean_task_dirs(self.base_dir, keep)
        if removed:
            log.info("removed the secrets of %d tasks this worker no longer runs", removed)
        return removed

    # -- where the files go ---------------------------------------------------------------------------

    def _check_base(self) -> None:
        """SecretsUnavailableError unless the base dir is (or will be made) on tmpfs or ramfs, through
        directories nobody but root and this user can change."""
        if self._checked:
            return
        existing = os.path.realpath(self.base_dir)
        while not os.path.exists(existing):
            existing = os.path.dirname(existing)
        fstype = filesystem_of(existing, self.mounts_file)
        if fstype not in RAM_FILESYSTEMS:
            found = f"on {fstype}" if fstype else f"on a filesystem not found in {self.mounts_file}"
            raise SecretsUnavailableError(
                f"secrets dir {self.base_dir} is {found}, not tmpfs or ramfs: secrets are never written to "
                "a disk (set the worker's secrets dir to a tmpfs, e.g. under /dev/shm)"
            )
        me = os.geteuid()
        path = existing
        while True:
            info = os.lstat(path)
            if info.st_uid not in (0, me) or (info.st_mode & 0o022 and not info.st_mode & stat.S_ISVTX):
                raise SecretsUnavailableError(
                    f"secrets dir {self.base_dir}: {path} may be changed by another user (owner uid "
                    f"{info.st_uid}, mode {stat.filemode(info.st_mode)}); refusing to write secrets there"
                )
            parent = os.path.dirname(path)
            if parent == path:
                break
            path = parent
        self._checked = True

    def _check_base_owner(self) -> None:
        info = os.lstat(self.base_dir)
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid():
            raise OSError(f"{self.base_dir} is not a directory of this user")
        if stat.S_IMODE(info.st_mode) != PRIVATE_DIR:
            os.chmod(self.base_dir, PRIVATE_DIR)
        parent = os.path.dirname(self.base_dir)
        pinfo = os.lstat(parent)
        if pinfo.st_uid == os.geteuid() and stat.S_IMODE(pinfo.st_mode) & 0o077:
            os.chmod(parent, PRIVATE_DIR)  # e.g. /dev/shm/warren-<uid>: made by us, private
