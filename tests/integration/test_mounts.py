"""Mounts on a real cluster: one manager, a Docker worker started with `--allow-bind` and a process
worker (`warren worker start`), services made with the CLI's `--mount`.

A volume's data survives what replaces its task (a SIGKILLed container, `service update --image`, a
worker restart) and `service rm`; a tmpfs and a bind reach the container (`docker inspect`); a bind
outside the worker's allow-list is not placed (`service ps` says why), nor one through a symlink that
leads out of it (the worker refuses it); the process runtime's volume directory survives the
replacement of its task.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.images import TEST_IMAGE, ensure_image
from tests.integration.workers import Fleet, docker_client, fleets, require_docker, task_processes
from warren.runtime.base import LABEL_VOLUME, LABEL_VOLUME_NODE
from warren.testing.wait import eventually

pytestmark = pytest.mark.integration

# This module's Docker volumes and images carry this suffix, so teardown removes exactly them.
RUN = secrets.token_hex(3)
IMAGE_V2 = f"warren-busybox:mounts-{RUN}"


class Setup:
    def __init__(self, fleet: Fleet, allowed: Path) -> None:
        self.fleet = fleet
        self.allowed = allowed  # the docker worker's --allow-bind root
        self.docker = fleet.workers[0]
        self.process = fleet.workers[1]
        self.cluster_id = str(fleet.managers.managers[0].info()["cluster_id"])


@pytest.fixture(scope="module")
def setup(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    require_docker()
    ensure_image()
    engine = docker_client()
    engine.images.get(TEST_IMAGE).tag(IMAGE_V2)
    allowed = tmp_path_factory.mktemp("allowed")
    try:
        with fleets(tmp_path_factory.mktemp("mounts"), request) as make:
            fleet = make()
            fleet.start_managers(1)
            fleet.add_worker("docker", labels=["kind=docker"], extra=["--allow-bind", str(allowed)])
            fleet.add_worker("process", labels=["kind=process"])
            yield Setup(fleet, allowed)
    finally:
        for volume in engine.volumes.list(filters={"name": RUN}):
            with contextlib.suppress(Exception):
                volume.remove(force=True)
        with contextlib.suppress(Exception):
            engine.images.remove(IMAGE_V2)


def volume_name(label: str) -> str:
    return f"{label}-{RUN}"


def service(setup: Setup, name: str, *flags: str, kind: str = "docker", command: str = "sleep 300") -> None:
    setup.fleet.cli(
        "service", "create", "--detach", name, "--image", TEST_IMAGE, "--command", command,
        "--constraint", f"node.labels.kind=={kind}", *(["--driver", "process"] if kind == "process" else []),
        *flags,
    ).ok()


def container_of(setup: Setup, task: dict[str, Any]) -> Any:
    found = docker_client().containers.list(
        filters={"label": [f"warren.cluster={setup.cluster_id}", f"warren.task={task['id']}"]}
    )
    assert len(found) == 1, found
    return found[0]


def read(setup: Setup, service_name: str, path: str) -> list[str]:
    """The lines of `path` as the running task of `service_name` reads them."""
    (task,) = setup.fleet.wait_running(service_name, 1)
    code, output = container_of(setup, task).exec_run(["cat", path])
    assert code == 0, output
    return output.decode().split()


def replaced(setup: Setup, service_name: str, old: dict[str, Any]) -> dict[str, Any]:
    """The running task of `service_name` once it is not `old`."""
    def other() -> dict[str, Any] | None:
        running = setup.fleet.running(service_name)
        return running[0] if len(running) == 1 and running[0]["id"] != old["id"] else None

    return eventually(other, 60, f"a new task of {service_name}")


def test_volume_data_survives_kill_update_restart_and_rm(setup: Setup) -> None:
    fleet, volume = setup.fleet, volume_name("db-data")
    # Each task appends its ID to the volume's log as it starts.
    service(setup, "db", "--mount", f"type=volume,src={volume},dst=/data",
            command='sh -c \'echo "$WARREN_TASK_ID" >> /data/log; exec sleep 300\'')
    (first,) = fleet.wait_running("db", 1)
    made = docker_client().api.inspect_volume(volume)
    assert made["Labels"] == {LABEL_VOLUME: volume, LABEL_VOLUME_NODE: setup.docker.name}
    assert read(setup, "db", "/data/log") == [first["id"]]

    # A container SIGKILLed: its replacement finds the data.
    container_of(setup, first).kill(signal="SIGKILL")
    second = replaced(setup, "db", first)
    assert read(setup, "db", "/data/log") == [first["id"], second["id"]]

    # A rolled task (a new image).
    fleet.cli("service", "update", "--detach", "db", "--image", IMAGE_V2).ok()
    third = replaced(setup, "db", second)
    assert read(setup, "db", "/data/log") == [first["id"], second["id"], third["id"]]

    # The worker restarts (it adopts the container), then the container is killed.
    worker = setup.docker
    assert worker.stop() == 0
    worker.start()
    worker.wait_ready(fleet.addr)
    (adopted,) = fleet.wait_running("db", 1)
    assert adopted["id"] == third["id"]
    container_of(setup, adopted).kill(signal="SIGKILL")
    fourth = replaced(setup, "db", third)
    assert read(setup, "db", "/data/log") == [first["id"], second["id"], third["id"], fourth["id"]]

    # `service rm` keeps the volume.
    container = container_of(setup, fourth)
    fleet.cli("service", "rm", "db").ok()
    eventually(lambda: not docker_client().containers.list(all=True, filters={"id": container.id}), 30,
               "the task's container removed")
    assert docker_client().api.inspect_volume(volume)["Name"] == volume


def test_tmpfs_and_bind_reach_the_container_beside_its_secrets(setup: Setup, tmp_path: Path) -> None:
    shared = setup.allowed / "media"
    shared.mkdir()
    (shared / "song").write_text("la")
    value = tmp_path / "value"
    value.write_text("s3cret")
    setup.fleet.cli("secret", "create", "player-key", str(value)).ok()
    service(setup, "player", "--mount", f"type=bind,src={shared},dst=/media,ro",
            "--mount", "type=tmpfs,dst=/cache,tmpfs-size=64m", "--secret", "player-key")
    (task,) = setup.fleet.wait_running("player", 1)
    container = container_of(setup, task)
    mounts = {m["Destination"]: m for m in container.attrs["Mounts"]}
    assert mounts["/media"]["Type"] == "bind"
    assert mounts["/media"]["Source"] == os.path.realpath(shared)
    assert mounts["/media"]["RW"] is False
    assert mounts["/cache"]["Type"] == "tmpfs"
    tmpfs = [m for m in container.attrs["HostConfig"]["Mounts"] if m["Target"] == "/cache"]
    assert tmpfs[0]["TmpfsOptions"]["SizeBytes"] == 64 * 1024 * 1024
    assert container.exec_run(["cat", "/media/song"]).output == b"la"
    assert container.exec_run(["touch", "/media/x"]).exit_code != 0  # read-only
    assert container.exec_run(["sh", "-c", "grep ' /cache ' /proc/mounts | grep -q tmpfs"]).exit_code == 0
    assert container.exec_run(["cat", "/run/secrets/player-key"]).output == b"s3cret"
    setup.fleet.cli("service", "rm", "player").ok()
    eventually(lambda: setup.fleet.cli("secret", "rm", "player-key").returncode == 0, 30,
               "the secret removed once no service uses it")


def test_a_bind_outside_the_allow_list_is_not_placed(setup: Setup) -> None:
    fleet = setup.fleet
    service(setup, "snoop", "--mount", "type=bind,src=/etc,dst=/host-etc")
    pending = eventually(
        lambda: [t for t in fleet.tasks("snoop") if t["state"] == "pending" and t["message"]],
        20, "a pending task with a reason",
    )
    assert "does not allow bind mount of /etc (worker start --allow-bind)" in pending[0]["message"]
    ps = fleet.cli("service", "ps", "snoop", "--no-trunc").ok()
    assert "pending" in ps.stdout and "bind mount of /etc" in ps.stdout, ps.stdout
    fleet.cli("service", "rm", "snoop").ok()

    # A link inside the allowed root that leads out of it: placed (the path as written is allowed), and
    # refused by the worker once resolved.
    link = setup.allowed / "escape"
    link.symlink_to("/etc")
    service(setup, "escape", "--mount", f"type=bind,src={link},dst=/host-etc",
            "--restart-policy", "none")
    failed = eventually(
        lambda: [t for t in fleet.tasks("escape") if t["state"] == "failed"], 30, "a failed task",
    )
    assert "(resolves to /etc) is not allowed on this worker" in failed[0]["message"], failed[0]
    fleet.cli("service", "rm", "escape").ok()


def test_the_process_runtime_s_volume_survives_its_task(setup: Setup) -> None:
    fleet, volume = setup.fleet, volume_name("cache")
    service(setup, "proc", "--mount", f"type=volume,src={volume},dst=/data", kind="process",
            command='sh -c \'echo "$WARREN_TASK_ID" >> "$WARREN_MOUNT_DATA/log"; exec sleep 300\'')
    (first,) = fleet.wait_running("proc", 1)
    directory = setup.process.data_dir / "volumes" / volume
    log = directory / "log"
    eventually(lambda: log.exists(), 10, "the task's line in its volume")
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    (pid,) = task_processes(f"WARREN_TASK_ID={first['id']}")
    os.kill(pid, signal.SIGKILL)
    second = replaced(setup, "proc", first)
    eventually(lambda: log.read_text().split() == [first["id"], second["id"]], 10, "both tasks' lines")
    fleet.cli("service", "rm", "proc").ok()
    assert directory.is_dir()  # `service rm` keeps the volume
