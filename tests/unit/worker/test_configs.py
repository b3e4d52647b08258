"""The worker's side of configs: contents kept on disk (they outlive a restart), each task's files
written at the mode its spec asks and removed when it ends, a missing content failing the task saying
which; and the agent end to end against a FakeManager that delivers contents in its session answers."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.unit.fake_manager import FakeManager, task_doc
from tests.unit.worker.agents import M1, make_settings, worker
from tests.unit.worker.fake_runtime import FakeRuntime
from warren.runtime.base import ConfigFile, TaskRun
from warren.spec.mounts import ConfigRef
from warren.testing.wait import eventually_async
from warren.worker.configs import ConfigsUnavailableError, TaskConfigs

CONF = b"listen 8080\n"
BINARY = b"\x00\xff\x01 not text"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def mode(path: str | Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


@pytest.fixture
def box(tmp_path: Path) -> TaskConfigs:
    box = TaskConfigs(str(tmp_path / "configs"))
    box.replace({"app-conf": b64(CONF), "blob": b64(BINARY)})
    return box


# -- TaskConfigs -----------------------------------------------------------------------------------------


def test_contents_are_kept_on_disk_as_the_manager_sent_them(box: TaskConfigs) -> None:
    assert box.content("app-conf") == CONF and box.content("blob") == BINARY
    assert mode(box.content_dir) == 0o700 and mode(os.path.join(box.content_dir, "app-conf")) == 0o600
    # A restarted worker (a new TaskConfigs on the same dir) still has them.
    again = TaskConfigs(box.base_dir)
    assert again.content("app-conf") == CONF and again.missing(["app-conf", "blob", "other"]) == {"other"}


def test_replace_keeps_exactly_what_the_manager_sent(box: TaskConfigs) -> None:
    box.replace({"app-conf": b64(b"new"), "Bad_Name": b64(b"x"), "not-b64": "***", "../up": b64(b"x"),
                 "line\n": b64(b"x")})
    assert sorted(os.listdir(box.content_dir)) == ["app-conf"]
    assert box.content("app-conf") == b"new" and box.content("blob") is None
    assert not os.path.exists(os.path.join(box.base_dir, "up"))


def test_a_task_gets_its_files_at_the_modes_asked(box: TaskConfigs) -> None:
    refs = [ConfigRef(name="app-conf", target="/etc/app.conf", mode=0o440), ConfigRef(name="blob")]
    files = box.prepare("task-1", refs)
    assert files is not None
    directory = os.path.join(box.tasks_dir, "task-1")
    assert files.directory == directory and mode(directory) == 0o755
    assert files.files == (ConfigFile(os.path.join(directory, "app-conf"), "/etc/app.conf"),
                           ConfigFile(os.path.join(directory, "blob"), "/blob"))
    assert Path(directory, "app-conf").read_bytes() == CONF and Path(directory, "blob").read_bytes() == BINARY
    assert (mode(Path(directory, "app-conf")), mode(Path(directory, "blob"))) == (0o440, 0o444)
    # Started again with fewer configs (or other modes): the directory holds exactly what it names now.
    box.prepare("task-1", [ConfigRef(name="blob", mode=0o400)])
    assert os.listdir(directory) == ["blob"] and mode(Path(directory, "blob")) == 0o400
    assert box.prepare("task-2", []) is None and not os.path.exists(os.path.join(box.tasks_dir, "task-2"))


def test_a_missing_content_fails_the_task_naming_the_config(box: TaskConfigs) -> None:
    with pytest.raises(ConfigsUnavailableError, match="no content of config gone-v1, other-v2"):
        box.prepare("task-1", [ConfigRef(name=n) for n in ("app-conf", "other-v2", "gone-v1")])
    assert not os.path.exists(os.path.join(box.tasks_dir, "task-1"))
    with pytest.raises(ConfigsUnavailableError, match="cannot name"):
        box.prepare("../escape", [ConfigRef(name="app-conf")])
    with pytest.raises(ConfigsUnavailableError, match="cannot name"):
        box.prepare("task-1\n", [ConfigRef(name="app-conf")])


def test_release_and_clean_remove_task_dirs(box: TaskConfigs) -> None:
    for task_id in ("t1", "t2", "t3"):
        box.prepare(task_id, [ConfigRef(name="app-conf")])
    box.release("t1")
    box.release("../t2")  # not a task ID: nothing happens
    assert sorted(os.listdir(box.tasks_dir)) == ["t2", "t3"]
    assert box.clean(["t3"]) == 1 and os.listdir(box.tasks_dir) == ["t3"]
    assert box.content("app-conf") == CONF, "the worker's copies stay"


# -- the agent, end to end -------------------------------------------------------------------------------


class ConfigManager(FakeManager):
    """A FakeManager that sends, with every assignments answer, the contents of the configs its running
    tasks name (as the leader's dispatcher does)."""

    def __init__(self, contents: dict[str, bytes]) -> None:
        super().__init__()
        self.contents = contents

    async def _session(self, body: dict[str, Any]) -> httpx.Response:
        answer = await super()._session(body)
        doc = orjson.loads(answer.content)
        if doc["assignments"] is not None:
            running = [t for t in doc["assignments"] if t["desired_state"] == "running"]
            names = {r["name"] for t in running for r in t["spec"].get("configs", ())} & set(self.contents)
            doc["configs"] = {n: b64(self.contents[n]) for n in names}
        return httpx.Response(200, content=orjson.dumps(doc), headers={"Content-Type": "application/json"})


class RecordingRuntime(FakeRuntime):
    """Reads the task's config files the moment it starts (what the container would see)."""

    def __init__(self, driver: str = "docker") -> None:
        super().__init__(driver)
        self.seen: dict[str, dict[str, tuple[bytes, int]]] = {}

    async def start(self, run: TaskRun) -> str:
        if run.configs_dir is not None:
            self.seen[run.task_id] = {
                f.target: (Path(f.host).read_bytes(), mode(f.host)) for f in run.config_files
            }
        return await super().start(run)


def with_configs(task_id: str, *refs: dict[str, Any], driver: str = "docker") -> dict[str, Any]:
    doc = task_doc(task_id, driver=driver, command=["sleep", "1"] if driver == "process" else None)
    doc["spec"]["configs"] = list(refs)
    doc["spec_digest"] = f"digest-of-{task_id}-{orjson.dumps(refs).decode()}"
    return doc


async def test_a_task_gets_its_configs_and_they_go_when_it_stops(tmp_path: Path) -> None:
    m = ConfigManager({"app-conf": CONF, "other": b"not for this worker's tasks"})
    rt = RecordingRuntime()
    data_dir = tmp_path / "worker"
    async with worker(make_settings(data_dir), rt, {M1: m}):
        m.assign(with_configs("t1", {"name": "app-conf", "target": "/etc/app.conf", "mode": 0o440}),
                 task_doc("t2"))
        await eventually_async(
            lambda: m.state("t1") == "running" and m.state("t2") == "running", 5.0, "tasks running"
        )
        assert rt.seen == {"t1": {"/etc/app.conf": (CONF, 0o440)}}  # t2 uses no config: no directory
        [run2] = [r for r in rt.starts if r.task_id == "t2"]
        assert run2.configs_dir is None and run2.config_files == ()
        content = data_dir / "configs" / "content"
        assert sorted(os.listdir(content)) == ["app-conf"], "only the configs of this worker's tasks"
        m.set_desired("t1", "shutdown")
        await eventually_async(lambda: m.state("t1") == "shutdown", 5.0, "t1 shutdown")
        task_dir = data_dir / "configs" / "tasks" / "t1"
        await eventually_async(lambda: not task_dir.exists(), 5.0, "t1's config files removed")


async def test_a_config_the_manager_did_not_send_fails_the_task_saying_which(tmp_path: Path) -> None:
    m = ConfigManager({})
    rt = RecordingRuntime("process")
    async with worker(make_settings(tmp_path / "worker"), rt, {M1: m}):
        m.assign(with_configs("t1", {"name": "gone-v1"}, driver="process"))
        await eventually_async(lambda: m.state("t1") == "failed", 5.0, "t1 failed")
        message = m.update("t1")["message"]  # type: ignore[index]
        assert "config gone-v1" in message and not rt.starts
        # It arrives (created again): the restart policy's replacement gets it and starts.
        m.contents["gone-v1"] = CONF
        m.assign(with_configs("t2", {"name": "gone-v1"}, driver="process"))
        await eventually_async(lambda: m.state("t2") == "running", 5.0, "t2 running")
    [run] = rt.starts
    assert run.configs_dir == str(tmp_path / "worker" / "configs" / "tasks" / "t2")
    assert rt.seen["t2"] == {"/gone-v1": (CONF, 0o444)}


async def test_a_restarted_worker_keeps_the_contents_and_asks_only_for_lost_ones(tmp_path: Path) -> None:
    m = ConfigManager({"app-conf": CONF})
    rt = RecordingRuntime("process")
    s = make_settings(tmp_path / "worker")
    async with worker(s, rt, {M1: m}):
        m.assign(with_configs("t1", {"name": "app-conf"}, driver="process"))
        await eventually_async(lambda: m.state("t1") == "running", 5.0, "t1 running")
    digest = m.digest()
    sessions = len(m.sessions)
    rt.running("t1")[0].running = True  # left running by the worker that stopped
    async with worker(s, rt, {M1: m}, token=None):
        await eventually_async(lambda: len(m.sessions) > sessions, 5.0, "a session after the restart")
        # The contents are on disk: nothing to ask again.
        assert m.sessions[sessions]["known"] == digest
    (tmp_path / "worker" / "configs" / "content" / "app-conf").unlink()  # lost (a disk cleaned up)
    sessions = len(m.sessions)
    async with worker(s, rt, {M1: m}, token=None):
        await eventually_async(lambda: len(m.sessions) > sessions + 1, 5.0, "sessions after the restart")
        assert m.sessions[sessions]["known"] is None  # claims no assignments: the answer brings it
        assert m.sessions[sessions + 1]["known"] == digest  # asked once, not at every heartbeat
    assert (tmp_path / "worker" / "configs" / "content" / "app-conf").read_bytes() == CONF
