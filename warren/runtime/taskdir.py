"""A process task's directory, `<base_dir>/<task_id>/` (mode 0700): its name, its state file
`state.json` (labels, pid, the process's start time, the command and env, the exit status once
known) and its output log `output.log` (stdout and stderr), rotated in place past a size.

The process runtime (process.py) is its only writer; the drill reads state files to find the
processes it kills.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any, BinaryIO

from warren.durable import write_atomically
from warren.runtime.base import LABEL_CLUSTER, LABEL_NODE

log = logging.getLogger(__name__)

CONTAINER_PREFIX = "proc-"
STATE_FILE = "state.json"
LOG_FILE = "output.log"
# Task IDs become directory names.
_SAFE_ID = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
# Bytes read at a time from a log file.
CHUNK = 64 * 1024


def safe_id(task_id: str) -> bool:
    """Whether `task_id` can name a task's directory."""
    return _SAFE_ID.match(task_id) is not None


def container_id_of(task_id: str) -> str:
    return CONTAINER_PREFIX + task_id


def task_id_of(container_id: str) -> str | None:
    if not container_id.startswith(CONTAINER_PREFIX):
        return None
    task_id = container_id[len(CONTAINER_PREFIX) :]
    return task_id if safe_id(task_id) else None


def read_task_state(tasks_dir: Path, task_id: str) -> dict[str, Any] | None:
    """The state file of task `task_id` under a worker's process-task dir (pid, its start time, ...);
    None if it is missing, unreadable or another task's."""
    try:
        with open(tasks_dir / task_id / STATE_FILE, "rb") as f:
            state = json.load(f)
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) and state.get("task_id") == task_id else None


def write_task_state(tasks_dir: Path, task_id: str, state: Mapping[str, Any]) -> None:
    """Atomically: a worker killed mid-write leaves the old state. Not fsynced: what the file says
    (the pid and its start time, the exit status) is about processes that die with the machine, and a
    worker's crash loses nothing of the page cache; the fsyncs cost ~7 ms per task on the event loop,
    which stalled a worker starting a thousand tasks past its session's grace (docs/decisions.md)."""
    write_atomically(str(tasks_dir / task_id / STATE_FILE), json.dumps(state).encode(), sync=False)


def task_states(tasks_dir: Path, cluster_id: str, node: str) -> list[dict[str, Any]]:
    """State of every task dir of this cluster and node, in the order of their names."""
    try:
        entries = sorted(os.scandir(tasks_dir), key=lambda e: e.name)
    except FileNotFoundError:
        return []
    states = []
    for entry in entries:
        if not entry.is_dir() or not safe_id(entry.name):
            continue
        state = read_task_state(tasks_dir, entry.name)
        if state is None:
            continue
        labels = state.get("labels") or {}
        if labels.get(LABEL_CLUSTER) == cluster_id and labels.get(LABEL_NODE) == node:
            states.append(state)
    return states


def rotate_log(tasks_dir: Path, task_id: str, max_bytes: int) -> None:
    """Past `max_bytes`, the log is copied to `output.log.1` and truncated in place (the process
    keeps writing through its O_APPEND descriptor; a few lines written during the copy may be lost)."""
    path = tasks_dir / task_id / LOG_FILE
    try:
        if path.stat().st_size <= max_bytes:
            return
        shutil.copyfile(path, path.with_name(LOG_FILE + ".1"))
        os.truncate(path, 0)
    except OSError as exc:
        log.warning("cannot rotate the log of task %s: %s", task_id, exc)


def tail_offset(f: BinaryIO, tail: int | None) -> int:
    """Offset in the open file `f` where its last `tail` lines begin (0 for all of it)."""
    end = f.seek(0, os.SEEK_END)
    if tail is None:
        return 0
    if tail <= 0:
        return end
    pos, newlines = end, 0
    # A final newline ends the last line; it does not start another.
    f.seek(max(end - 1, 0))
    if end and f.read(1) == b"\n":
        pos -= 1
    while pos > 0:
        size = min(CHUNK, pos)
        f.seek(pos - size)
        block = f.read(size)
        index = len(block)
        while (index := block.rfind(b"\n", 0, index)) != -1:
            newlines += 1
            if newlines == tail:
                return pos - size + index + 1
        pos -= size
    return 0
