"""The process runtime's pure parts: /proc/<pid>/stat parsing, exit codes, log tails, task IDs and
command lookup (no task process is started here)."""

from __future__ import annotations

import asyncio
import io
import os
import signal
import stat
from pathlib import Path

import pytest

from warren.runtime import procfs
from warren.runtime.procfs import exit_code_of, is_ours, parse_stat, proc_stat
from warren.runtime.spawn import resolve
from warren.runtime.taskdir import container_id_of, tail_offset, task_id_of

# A real line of /proc/<pid>/stat: pid 29025, session 5704, start time 178097 ticks.
STAT = (
    "29025 (cat) R 28982 28982 5704 0 -1 4194304 100 0 0 0 0 0 0 0 20 0 1 0 178097 3133440 388 "
    "18446744073709551615 94674674581504 94674674601385 140732745161600 0 0 0 0 0 0 0 0 0 17 0 0 0"
)


def test_stat_fields() -> None:
    assert parse_stat(STAT) == ("R", 5704, 178097)


@pytest.mark.parametrize("name", ["a b", "x) (y", "))", "sleep) S 1 1 1 0 -1 0 0"])
def test_stat_command_names_with_spaces_and_parentheses(name: str) -> None:
    # A process may name itself anything (prctl PR_SET_NAME); only the last ')' ends the name.
    assert parse_stat(STAT.replace("(cat)", f"({name})")) == ("R", 5704, 178097)


@pytest.mark.parametrize("text", ["", "29025 (cat", "29025 (cat) R 1 2", "29025 (cat) R 1 2 x" + " 0" * 20])
def test_malformed_stat_is_none(text: str) -> None:
    assert parse_stat(text) is None


def test_own_process_is_recognised_only_with_its_start_time() -> None:
    found = proc_stat(os.getpid())
    assert found is not None
    state, session, start = found
    assert session == os.getsid(0)
    assert is_ours(os.getpid(), start)
    assert not is_ours(os.getpid(), start + 1)  # same pid, another process: a reused pid
    assert not is_ours(os.getpid(), None)
    assert not is_ours(None, start)
    assert proc_stat(2**22 + 1) is None  # above pid_max: never a live process


@pytest.mark.parametrize(
    ("returncode", "code"), [(0, 0), (3, 3), (-signal.SIGTERM, 143), (-signal.SIGKILL, 137)]
)
def test_exit_codes_say_signals_as_a_shell_does(returncode: int, code: int) -> None:
    assert exit_code_of(returncode) == code


def tail(data: bytes, lines: int | None) -> bytes:
    f = io.BytesIO(data)
    f.seek(tail_offset(f, lines))
    return f.read()


@pytest.mark.parametrize(
    ("data", "lines", "expected"),
    [
        (b"a\nb\nc\n", 2, b"b\nc\n"),
        (b"a\nb\nc\n", 3, b"a\nb\nc\n"),
        (b"a\nb\nc\n", 10, b"a\nb\nc\n"),
        (b"a\nb\nc\n", 0, b""),
        (b"a\nb\nc\n", None, b"a\nb\nc\n"),
        (b"a\nb\nc", 1, b"c"),  # a last line without its newline (still being written) counts
        (b"a\nb\nc", 2, b"b\nc"),
        (b"", 5, b""),
        (b"\n\n\n", 2, b"\n\n"),
    ],
)
def test_tail(data: bytes, lines: int | None, expected: bytes) -> None:
    assert tail(data, lines) == expected


def test_tail_across_read_blocks() -> None:
    long_line = b"x" * 100_000 + b"\n"  # longer than one 64 KiB block
    data = b"first\n" + long_line + long_line + b"last\n"
    assert tail(data, 2) == long_line + b"last\n"
    assert tail(data, 3) == long_line + long_line + b"last\n"
    assert tail(data, 4) == data


@pytest.mark.parametrize("task_id", ["t1", "task-abc_1.2", "A"])
def test_container_ids_round_trip(task_id: str) -> None:
    assert task_id_of(container_id_of(task_id)) == task_id


@pytest.mark.parametrize(
    "container_id", ["t1", "proc-", "proc-..", "proc-../etc", "proc-a/b", "proc-.hidden"]
)
def test_container_ids_that_name_no_task_dir(container_id: str) -> None:
    assert task_id_of(container_id) is None


def test_commands_are_looked_up_in_the_tasks_path_or_its_dir(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    tool = bin_dir / "tool"
    tool.write_text("#!/bin/sh\n")
    tool.chmod(tool.stat().st_mode | stat.S_IXUSR)
    (tmp_path / "data.txt").write_text("not a program")

    assert resolve("tool", str(bin_dir), tmp_path) == str(tool)
    assert resolve("tool", "/nonexistent", tmp_path) is None
    assert resolve("./bin/tool", "", tmp_path) == str(tmp_path / "bin" / "tool")
    assert resolve(str(tool), "", Path("/")) == str(tool)
    assert resolve("./data.txt", "", tmp_path) is None  # not executable
    assert resolve("./bin", "", tmp_path) is None  # a directory


async def test_stops_that_end_together_share_one_scan_of_proc(monkeypatch: pytest.MonkeyPatch) -> None:
    # Stopping a thousand tasks made a thousand scans of every process on the machine.
    scans: list[int] = []

    def sessions() -> dict[int, list[int]]:
        scans.append(1)
        return {10: [11, 12], 20: [21]}

    monkeypatch.setattr(procfs, "sessions", sessions)
    scan = procfs.SessionScan()
    found = await asyncio.gather(scan.members(10), scan.members(20), scan.members(30))
    assert found == [[11, 12], [21], []] and len(scans) == 1
    assert await scan.members(20) == [21] and len(scans) == 2  # a later stop: a scan of its own

