"""The worker's side of secrets: values in memory only, one directory per task on tmpfs (refused
elsewhere), files of the right modes, removed when the task ends; and the agent end to end against a
FakeManager that delivers values in its session answers."""

from __future__ import annotations

import base64
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.unit.fake_manager import FakeManager, task_doc
from tests.unit.worker.agents import M1, make_settings, worker
from tests.unit.worker.fake_runtime import FakeRuntime
from warren.config import WorkerSettings, default_secrets_dir
from warren.errors import ConfigError
from warren.runtime.base import TaskRun
from warren.testing.wait import eventually_async
from warren.worker.secrets import SecretsUnavailableError, TaskSecrets, filesystem_of

VALUE = b"s3cr3t-value-\x00\xff-end"
B64 = base64.b64encode(VALUE).decode()


def mounts(tmp_path: Path, fstype: str = "tmpfs") -> str:
    """A mount table with `tmp_path` on `fstype` (over a root on ext4)."""
    table = tmp_path / "mounts"
    table.write_text(f"/dev/sda1 / ext4 rw 0 0\nnone {tmp_path} {fstype} rw 0 0\n")
    return str(table)


@pytest.fixture
def box(tmp_path: Path) -> TaskSecrets:
    box = TaskSecrets(str(tmp_path / "secrets" / "node-1"), mounts_file=mounts(tmp_path))
    box.replace({"db": B64, "api": base64.b64encode(b"api").decode()})
    return box


def mode(path: str) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


# -- TaskSecrets ---------------------------------------------------------------------------------------


def test_a_process_task_gets_private_files_and_a_container_shared_read_only_ones(box: TaskSecrets) -> None:
    own = box.prepare("task-1", ["db"], shared=False)
    assert own is not None and own == os.path.join(box.base_dir, "task-1")
    assert Path(own, "db").read_bytes() == VALUE
    assert (mode(own), mode(os.path.join(own, "db"))) == (0o700, 0o400)
    assert mode(box.base_dir) == 0o700 and os.listdir(own) == ["db"]
    shared = box.prepare("task-2", ["db", "api"], shared=True)
    assert shared is not None and sorted(os.listdir(shared)) == ["api", "db"]
    assert (mode(shared), mode(os.path.join(shared, "api"))) == (0o755, 0o444)
    assert box.prepare("task-3", [], shared=False) is None  # no secrets: no directory, no mount
    assert not os.path.exists(os.path.join(box.base_dir, "task-3"))


def test_a_missing_value_fails_the_task_naming_the_secret_only(box: TaskSecrets) -> None:
    with pytest.raises(SecretsUnavailableError, match="was not given the value of secret nope") as info:
        box.prepare("task-1", ["db", "nope"], shared=False)
    assert B64 not in str(info.value) and "s3cr3t" not in str(info.value)
    box.release("task-1")
    assert not os.path.exists(os.path.join(box.base_dir, "task-1"))


def test_a_name_or_task_id_ending_in_a_newline_is_refused(box: TaskSecrets) -> None:
    # A pattern's `$` also matches before a final newline: names and IDs are matched whole.
    with pytest.raises(SecretsUnavailableError, match="cannot name a secrets directory"):
        box.prepare("task-1\n", ["db"], shared=False)
    with pytest.raises(SecretsUnavailableError, match="invalid secret names"):
        box.prepare("task-1", ["db\n"], shared=False)
    box.replace({"db\n": B64})
    assert box.missing(["db"]) == {"db"}


def test_nothing_is_written_unless_the_dir_is_on_tmpfs_or_ramfs(tmp_path: Path) -> None:
    box = TaskSecrets(str(tmp_path / "secrets"), mounts_file=mounts(tmp_path, "ext4"))
    box.replace({"db": B64})
    with pytest.raises(SecretsUnavailableError, match="is on ext4, not tmpfs or ramfs"):
        box.prepare("task-1", ["db"], shared=False)
    assert not (tmp_path / "secrets").exists()
    unknown = TaskSecrets(str(tmp_path / "secrets"), mounts_file=str(tmp_path / "no-such-table"))
    unknown.replace({"db": B64})
    with pytest.raises(SecretsUnavailableError, match="not tmpfs or ramfs"):
        unknown.prepare("task-1", ["db"], shared=False)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to make a directory of another user")
def test_a_base_another_user_may_change_is_refused(tmp_path: Path) -> None:
    theirs = tmp_path / "warren-0"
    theirs.mkdir(mode=0o755)
    os.chown(theirs, 12345, 12345)
    box = TaskSecrets(str(theirs / "node-1"), mounts_file=mounts(tmp_path))
    box.replace({"db": B64})
    with pytest.raises(SecretsUnavailableError, match="may be changed by another user"):
        box.prepare("task-1", ["db"], shared=False)
    assert not (theirs / "node-1").exists()


def test_files_left_on_tmpfs_serve_a_worker_that_restarted_without_values(box: TaskSecrets) -> None:
    box.prepare("task-1", ["db"], shared=False)
    again = TaskSecrets(box.base_dir, mounts_file=box.mounts_file)  # a new process: memory is empty
    assert again.missing(["db"]) == {"db"}
    assert again.prepare("task-1", ["db"], shared=False) == os.path.join(box.base_dir, "task-1")
    with pytest.raises(SecretsUnavailableError):
        again.prepare("task-2", ["db"], shared=False)


def test_release_and_clean_remove_task_dirs(box: TaskSecrets) -> None:
    for task_id in ("keep", "gone-1", "gone-2"):
        box.prepare(task_id, ["db"], shared=task_id == "gone-2")
    assert box.clean({"keep"}) == 2
    assert os.listdir(box.base_dir) == ["keep"]
    box.release("keep")
    assert os.listdir(box.base_dir) == []
    box.release("../../etc")  # never leaves the base
    assert TaskSecrets("/nonexistent/warren").clean(set()) == 0


def test_replace_keeps_exactly_what_the_manager_sent(
    box: TaskSecrets, caplog: pytest.LogCaptureFixture
) -> None:
    box.replace({"db": B64, "bad": "***not base64***", "Bad_Name": B64})
    assert box.missing(["db", "api", "bad", "Bad_Name"]) == {"api", "bad", "Bad_Name"}
    assert B64 not in caplog.text and "s3cr3t" not in repr(box)


def test_filesystem_of_takes_the_innermost_mount_and_unescapes_spaces(tmp_path: Path) -> None:
    table = tmp_path / "mounts"
    table.write_text("/dev/sda1 / ext4 rw 0 0\ntmpfs /dev/shm tmpfs rw 0 0\nx /my\\040dir ramfs rw 0 0\n")
    assert filesystem_of("/dev/shm/warren-0/n", str(table)) == "tmpfs"
    assert filesystem_of("/dev/shmother", str(table)) == "ext4"
    assert filesystem_of("/my dir/a", str(table)) == "ramfs"


def test_the_default_dir_is_per_user_and_node_under_dev_shm_and_must_be_absolute() -> None:
    assert default_secrets_dir("worker-1") == f"/dev/shm/warren-{os.geteuid()}/worker-1"
    assert WorkerSettings().resolved_secrets_dir("w") == default_secrets_dir("w")
    assert WorkerSettings(secrets_dir="/run/x").resolved_secrets_dir("w") == "/run/x"
    with pytest.raises(ConfigError, match="absolute"):
        WorkerSettings(secrets_dir="relative/dir").validate()


# -- the agent, end to end -------------------------------------------------------------------------------


@pytest.fixture
def shm_dir() -> Iterator[Path]:
    """A private directory on the real /dev/shm (the agent checks the live mount table)."""
    if filesystem_of("/dev/shm") not in ("tmpfs", "ramfs"):
        pytest.skip("/dev/shm is not a tmpfs here")
    path = Path(tempfile.mkdtemp(prefix="warren-test-", dir="/dev/shm"))
    try:
        yield path
    finally:
        import shutil

        shutil.rmtree(path, ignore_errors=True)


class SecretManager(FakeManager):
    """A FakeManager that sends, with every assignments answer, the values of the secrets its running
    tasks name (as the leader's dispatcher does)."""

    def __init__(self, values: dict[str, bytes]) -> None:
        super().__init__()
        self.values = values

    async def _session(self, body: dict[str, Any]) -> httpx.Response:
        answer = await super()._session(body)
        doc = orjson.loads(answer.content)
        if doc["assignments"] is not None:
            running = [t for t in doc["assignments"] if t["desired_state"] == "running"]
            names = {n for t in running for n in t["spec"].get("secrets", ())} & set(self.values)
            doc["secrets"] = {n: base64.b64encode(self.values[n]).decode() for n in names}
        return httpx.Response(200, content=orjson.dumps(doc), headers={"Content-Type": "application/json"})


class RecordingRuntime(FakeRuntime):
    """Reads the task's secrets dir the moment it starts (what the container would see)."""

    def __init__(self, driver: str = "docker") -> None:
        super().__init__(driver)
        self.seen: dict[str, dict[str, bytes]] = {}

    async def start(self, run: TaskRun) -> str:
        if run.secrets_dir is not None:
            where = Path(run.secrets_dir)
            self.seen[run.task_id] = {p.name: p.read_bytes() for p in where.iterdir()}
        return await super().start(run)


def files_under(root: Path) -> Iterator[Path]:
    for path in root.rglob("*"):
        if path.is_file():
            yield path


def with_secrets(task_id: str, *names: str, driver: str = "docker") -> dict[str, Any]:
    doc = task_doc(task_id, driver=driver, command=["sleep", "1"] if driver == "process" else None)
    doc["spec"]["secrets"] = list(names)
    doc["spec_digest"] = f"digest-of-{task_id}-{'-'.join(names)}"
    return doc


async def test_a_task_gets_its_secrets_from_memory_and_they_go_when_it_stops(
    tmp_path: Path, shm_dir: Path
) -> None:
    m = SecretManager({"db": VALUE, "other": b"not for this worker's tasks"})
    rt = RecordingRuntime()
    data_dir = tmp_path / "worker"
    async with worker(make_settings(data_dir, secrets_dir=str(shm_dir / "node")), rt, {M1: m}):
        m.assign(with_secrets("t1", "db"), task_doc("t2"))
        await eventually_async(
            lambda: m.state("t1") == "running" and m.state("t2") == "running", 5.0, "tasks running"
        )
        assert rt.seen == {"t1": {"db": VALUE}}  # t2 uses no secret: no directory at all
        [run1] = [r for r in rt.starts if r.task_id == "t1"]
        [run2] = [r for r in rt.starts if r.task_id == "t2"]
        assert run1.secrets_dir == str(shm_dir / "node" / "t1") and run2.secrets_dir is None
        assert mode(str(shm_dir / "node" / "t1" / "db")) == 0o444  # docker: the container's user may be any
        m.set_desired("t1", "shutdown")
        await eventually_async(lambda: m.state("t1") == "shutdown", 5.0, "t1 shutdown")
        await eventually_async(lambda: not (shm_dir / "node" / "t1").exists(), 5.0, "t1's secrets removed")
    # Nothing the worker keeps on disk holds the value (worker.db, its WAL, node.json...).
    for path in files_under(data_dir):
        content = path.read_bytes()
        assert VALUE not in content and B64.encode() not in content, path


async def test_a_secret_the_manager_did_not_send_fails_the_task_saying_which(
    tmp_path: Path, shm_dir: Path
) -> None:
    m = SecretManager({})
    rt = RecordingRuntime("process")
    async with worker(make_settings(tmp_path / "worker", secrets_dir=str(shm_dir / "node")), rt, {M1: m}):
        m.assign(with_secrets("t1", "gone", driver="process"))
        await eventually_async(lambda: m.state("t1") == "failed", 5.0, "t1 failed")
    message = m.update("t1")["message"]  # type: ignore[index]
    assert "secret gone" in message and not rt.starts
    assert not (shm_dir / "node" / "t1").exists()


async def test_a_restarted_worker_asks_again_for_the_values_it_lost(tmp_path: Path, shm_dir: Path) -> None:
    m = SecretManager({"db": VALUE})
    rt = RecordingRuntime("process")
    s = make_settings(tmp_path / "worker", secrets_dir=str(shm_dir / "node"))
    async with worker(s, rt, {M1: m}):
        m.assign(with_secrets("t1", "db", driver="process"))
        await eventually_async(lambda: m.state("t1") == "running", 5.0, "t1 running")
    digest = m.digest()
    sessions = len(m.sessions)
    rt.running("t1")[0].running = True  # left running by the worker that stopped
    async with worker(s, rt, {M1: m}, token=None):
        # The first call after the restart claims no assignments: the answer carries the values again.
        await eventually_async(lambda: len(m.sessions) > sessions + 1, 5.0, "sessions after the restart")
        assert m.sessions[sessions]["known"] is None
        assert m.sessions[sessions + 1]["known"] == digest  # asked once, not at every heartbeat
        m.assign(with_secrets("t2", "db", driver="process"))
        await eventually_async(lambda: m.state("t2") == "running", 5.0, "t2 running")
    assert rt.seen["t2"] == {"db": VALUE}
    assert mode(str(shm_dir / "node" / "t2" / "db")) == 0o400  # a process runs as the worker's user
