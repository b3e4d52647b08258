"""The configs of a worker's tasks: their content on disk, and one directory of files per task.

The leader sends a worker, with its assignments, the content of the configs its tasks use and no
others (docs/worker-protocol.md). A config is no secret, so the worker keeps it on disk, under
`<data dir>/configs/content/<NAME>` (mode 0600): a worker restarted while cut off from every manager
can still start its tasks. Before a task starts, its configs are written to
`<data dir>/configs/tasks/<task id>/<NAME>` with the mode its spec asks (0444 by default); a container
gets each file bind-mounted read-only at its target, a process finds them in `$WARREN_CONFIGS_DIR`.
A task's directory is removed when the task ends (or leaves the worker), and directories of tasks the
worker no longer knows are removed when it starts.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from warren.formats import NAME_PATTERN
from warren.runtime.base import ConfigFile, RuntimeStartError
from warren.spec.mounts import ConfigRef
from warren.worker.files import TASK_ID, clean_task_dirs, release_task_dir, remove_path, write_file

log = logging.getLogger(__name__)

CONTENT_DIR, TASKS_DIR = "content", "tasks"
# The worker's copies are its own; a task's directory is readable by any user (the container's user
# is often not the worker's), each file at the mode its spec asks.
CONTENT_FILE, PRIVATE_DIR, TASK_DIR = 0o600, 0o700, 0o755

_NAME = re.compile(NAME_PATTERN)
# Task IDs become directory names (Warren mints them; this refuses anything that could leave `base`).


class ConfigsUnavailableError(RuntimeStartError):
    """A task's configs cannot be given to it; the message (the task's failure) says why."""


@dataclass(frozen=True, slots=True)
class TaskConfigFiles:
    """A task's config files: the directory holding them, and each file with its target."""

    directory: str
    files: tuple[ConfigFile, ...]


class TaskConfigs:
    """The config contents (disk) and task directories of one worker, under `base_dir`."""

    def __init__(self, base_dir: str) -> None:
        self.base_dir = os.path.abspath(base_dir)
        self.content_dir = os.path.join(self.base_dir, CONTENT_DIR)
        self.tasks_dir = os.path.join(self.base_dir, TASKS_DIR)

    def __repr__(self) -> str:
        return f"TaskConfigs({self.base_dir!r})"

    # -- contents -------------------------------------------------------------------------------------

    def replace(self, values: Mapping[str, object]) -> None:
        """The contents (base64) of a session answer: exactly the configs this worker's tasks use now.
        Each is written if it changed; the others are removed. OSError if the disk refuses."""
        fresh: dict[str, bytes] = {}
        for name, data in values.items():
            if not isinstance(data, str) or not _NAME.fullmatch(str(name)):
                log.warning("a manager sent config %r in a form this worker does not read; ignored", name)
                continue
            try:
                fresh[str(name)] = base64.b64decode(data.encode("ascii"), validate=True)
            except (binascii.Error, UnicodeEncodeError, ValueError):
                log.warning("a manager sent config %s not in base64; ignored", name)
        _make_dir(self.base_dir, PRIVATE_DIR)
        _make_dir(self.content_dir, PRIVATE_DIR)
        for name, content in fresh.items():
            if self.content(name) != content:
                write_file(os.path.join(self.content_dir, name), content, CONTENT_FILE)
        for entry in os.listdir(self.content_dir):
            if entry not in fresh:
                remove_path(os.path.join(self.content_dir, entry))

    def content(self, name: str) -> bytes | None:
        """The content of config `name` this worker holds (None: none)."""
        if not _NAME.fullmatch(name):
            return None
        path = os.path.join(self.content_dir, name)
        try:
            with open(path, "rb") as handle:
                return handle.read()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return None

    def missing(self, names: Iterable[str]) -> set[str]:
        """Which of `names` this worker holds no content of."""
        return {n for n in names
                if not _NAME.fullmatch(n) or not os.path.isfile(os.path.join(self.content_dir, n))}

    # -- task directories -----------------------------------------------------------------------------

    def task_dir(self, task_id: str) -> str:
        if not TASK_ID.fullmatch(task_id):
            raise ConfigsUnavailableError(f"task ID {task_id!r} cannot name a configs directory")
        return os.path.join(self.tasks_dir, task_id)

    def prepare(self, task_id: str, refs: Sequence[ConfigRef]) -> TaskConfigFiles | None:
        """Write the task's configs into its directory, each at the mode asked (None: the task uses
        none). ConfigsUnavailableError if a content is missing or cannot be written."""
        if not refs:
            return None
        directory = self.task_dir(task_id)
        absent = self.missing(ref.name for ref in refs)
        if absent:
            raise ConfigsUnavailableError(
                f"this worker has no content of config {', '.join(sorted(absent))}: it does not exist "
                "(removed, or not restored after a backup restore), or no manager has sent it yet; the "
                "restart policy's replacement gets it once it arrives"
            )
        files = []
        try:
            _make_dir(self.base_dir, PRIVATE_DIR)
            _make_dir(self.tasks_dir, TASK_DIR)
            _make_dir(directory, TASK_DIR)
            os.chmod(directory, TASK_DIR)
            names = set()
            for ref in refs:
                content = self.content(ref.name)
                if content is None:  # removed since the check: a new session answer
                    raise ConfigsUnavailableError(f"this worker has no content of config {ref.name}")
                path = os.path.join(directory, ref.name)
                write_file(path, content, ref.mode)
                names.add(ref.name)
                files.append(ConfigFile(path, ref.path))
            for entry in os.listdir(directory):
                if entry not in names:
                    remove_path(os.path.join(directory, entry))
        except OSError as exc:
            raise ConfigsUnavailableError(
                f"cannot write the task's configs to {directory}: {exc.strerror or exc}"
            ) from None
        return TaskConfigFiles(directory, tuple(files))

    def release(self, task_id: str) -> None:
        """Remove the task's directory (the task ended or left this worker)."""
        release_task_dir(self.tasks_dir, task_id)

    def clean(self, keep: Iterable[str]) -> int:
        """Remove the directory of every task not in `keep` (at start: tasks that ended while the
        worker was away); how many were removed."""
        removed = clean_task_dirs(self.tasks_dir, keep)
        if removed:
            log.info("removed the configs of %d tasks this worker no longer runs", removed)
        return removed


def _make_dir(path: str, mode: int) -> None:
    """A directory (not a link to one) at `path`, made with `mode` if it is not there."""
    try:
        os.mkdir(path, mode)
    except FileExistsError:
        if os.path.islink(path) or not os.path.isdir(path):
            raise OSError(f"{path} is not a directory") from None
