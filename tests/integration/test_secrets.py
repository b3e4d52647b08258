"""Secrets on a real cluster: one manager, a Docker worker and a process worker (`warren worker start`).

A secret reaches the tasks of the services that name it (a container reads /run/secrets/NAME, a
process $WARREN_SECRETS_DIR/NAME, 0400) and no other; its file goes when the task goes; a secret in
use cannot be removed; and the value is never in an API answer, a CLI output, a daemon's log, or any
file under the manager's or the workers' data dirs (Raft log, snapshots and warren.db included).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.images import ensure_image
from tests.integration.workers import Fleet, WorkerProc, docker_client, fleets, require_docker, task_processes
from warren.config import default_secrets_dir
from warren.testing.wait import eventually

pytestmark = pytest.mark.integration

# Every value this module stores: none may show up anywhere but in the tasks that use it.
VALUES: list[bytes] = []


def new_value(label: str) -> bytes:
    value = f"warren-secret-{label}-{os.urandom(12).hex()}".encode()
    VALUES.append(value)
    return value


@pytest.fixture(scope="module")
def fleet(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    require_docker()
    ensure_image()
    bases: list[str] = []
    try:
        with fleets(tmp_path_factory.mktemp("secrets"), request) as make:
            fleet = make()
            fleet.start_managers(1)
            for runtime in ("docker", "process"):
                bases.append(default_secrets_dir(fleet.add_worker(runtime, labels=[f"kind={runtime}"]).name))
            yield fleet
    finally:  # the workers were killed: what a task still had on tmpfs is removed here
        for base in bases:
            shutil.rmtree(base, ignore_errors=True)


def no_task_dirs(fleet: Fleet) -> bool:
    """No worker holds the secrets of any task (every test removes its services)."""
    return not any(os.listdir(default_secrets_dir(w.name)) for w in fleet.workers
                   if os.path.isdir(default_secrets_dir(w.name)))


@pytest.fixture
def value_file(tmp_path: Path) -> Iterator[Path]:
    """Where a test writes a value for `secret create NAME FILE`: outside every data dir."""
    path = tmp_path / "value"
    yield path
    path.unlink(missing_ok=True)


def create_secret(fleet: Fleet, name: str, value: bytes, value_file: Path) -> dict[str, Any]:
    value_file.write_bytes(value)
    fleet.cli("secret", "create", name, str(value_file)).ok()
    value_file.unlink()
    secret = fleet.cli("secret", "inspect", name, "-o", "json").ok()
    doc: dict[str, Any] = json.loads(secret.stdout)
    return doc


def worker(fleet: Fleet, runtime: str) -> WorkerProc:
    return next(w for w in fleet.workers if w.runtime == runtime)


def docker_service(fleet: Fleet, name: str, *flags: str) -> dict[str, Any]:
    fleet.cli(
        "service", "create", "--detach", name, "--image", ensure_image(), "--command", "sleep 100000",
        "--constraint", "node.labels.kind==docker", "--stop-timeout", "1s", *flags,
    ).ok()  # fmt: skip
    [task] = fleet.wait_running(name, 1)
    return task


def exec_in(container_id: str, *cmd: str) -> tuple[int, bytes]:
    result = docker_client().containers.get(container_id).exec_run(list(cmd))
    return int(result.exit_code), bytes(result.output)


def env_of(pid: int) -> dict[str, str]:
    with open(f"/proc/{pid}/environ", "rb") as f:
        items = [item.decode(errors="replace").partition("=") for item in f.read().split(b"\0") if item]
    return {k: v for k, _, v in items}


def test_a_container_reads_its_secret_and_a_container_of_another_service_has_none(
    fleet: Fleet, value_file: Path
) -> None:
    value = new_value("docker")
    create_secret(fleet, "docker-db", value, value_file)
    task = docker_service(fleet, "uses-secret", "--secret", "docker-db")
    other = docker_service(fleet, "no-secret")
    assert exec_in(task["container_id"], "cat", "/run/secrets/docker-db") == (0, value)
    code, _ = exec_in(task["container_id"], "sh", "-c", "echo x > /run/secrets/docker-db")
    assert code != 0, "the secrets mount must be read-only"
    code, _ = exec_in(other["container_id"], "ls", "/run/secrets")
    assert code != 0, "a service without secrets gets no /run/secrets at all"
    # On the host: the task's own dir on tmpfs, in a private per-node base.
    mounts = docker_client().api.inspect_container(task["container_id"])["Mounts"]
    [mount] = [m for m in mounts if m["Destination"] == "/run/secrets"]
    source = mount["Source"]
    assert source.startswith("/dev/shm/") and source.endswith(f"/{task['node']}/{task['id']}"), source
    assert mount["RW"] is False
    assert stat.S_IMODE(os.stat(os.path.dirname(source)).st_mode) == 0o700
    fleet.cli("service", "rm", "uses-secret").ok()
    fleet.cli("service", "rm", "no-secret").ok()
    eventually(lambda: not os.path.exists(source), 30, "the task's secrets dir removed with the task")


def test_a_process_gets_a_0400_file_that_is_removed_with_the_task(fleet: Fleet, value_file: Path) -> None:
    value = new_value("process")
    create_secret(fleet, "proc-db", value, value_file)
    w = worker(fleet, "process")
    script = 'sha256sum "$WARREN_SECRETS_DIR/proc-db" > /dev/null && exec sleep 100000'
    fleet.cli(
        "service", "create", "--detach", "proc-secret", "--driver", "process", "--image", "none",
        "--command", f"sh -c '{script}'", "--secret", "proc-db", "--constraint", "node.labels.kind==process",
    ).ok()  # fmt: skip
    [task] = fleet.wait_running("proc-secret", 1)
    assert task["node"] == w.name
    pids = eventually(lambda: task_processes(f"WARREN_TASK_ID={task['id']}"), 15, "the task's process")
    directory = env_of(pids[0])["WARREN_SECRETS_DIR"]
    path = Path(directory, "proc-db")
    assert path.read_bytes() == value
    assert stat.S_IMODE(path.stat().st_mode) == 0o400 and stat.S_IMODE(os.stat(directory).st_mode) == 0o700
    assert directory.startswith("/dev/shm/") and directory.endswith(f"/{w.name}/{task['id']}")
    # Only the tasks that use a secret get one: the process worker holds no other task dir.
    assert os.listdir(os.path.dirname(directory)) == [task["id"]]
    fleet.cli("service", "rm", "proc-secret").ok()
    eventually(lambda: not os.path.exists(directory), 30, "the task's secrets dir removed with the task")


def test_a_secret_in_use_cannot_be_removed_and_a_service_cannot_name_an_unknown_one(
    fleet: Fleet, value_file: Path
) -> None:
    create_secret(fleet, "in-use", new_value("in-use"), value_file)
    docker_service(fleet, "holder", "--secret", "in-use")
    refused = fleet.cli("secret", "rm", "in-use")
    assert refused.returncode == 1 and "in use by service holder" in refused.stderr, str(refused)
    unknown = fleet.cli("service", "create", "-d", "ghost", "--image", ensure_image(), "--secret", "nope")
    assert unknown.returncode == 1 and "no secret named 'nope'" in unknown.stderr, str(unknown)
    fleet.cli("service", "update", "--detach", "holder", "--secret-rm", "in-use").ok()
    fleet.cli("secret", "rm", "in-use").ok()
    listed = fleet.cli("secret", "ls").ok().stdout
    assert "in-use" not in listed
    fleet.cli("service", "rm", "holder").ok()
    eventually(lambda: no_task_dirs(fleet), 30, "every task's secrets dir removed")


def test_the_value_is_nowhere_but_in_the_tasks(fleet: Fleet, value_file: Path) -> None:
    value = new_value("scan")
    create_secret(fleet, "scanned", value, value_file)
    docker_service(fleet, "scan-user", "--secret", "scanned")
    answers = [
        fleet.cli("secret", "ls", "-o", "json").ok().stdout,
        fleet.cli("secret", "inspect", "scanned", "-o", "yaml").ok().stdout,
        fleet.cli("service", "inspect", "scan-user", "-o", "json").ok().stdout,
        fleet.cli("service", "ps", "scan-user", "--no-trunc").ok().stdout,
    ]
    logs = [p.all_output() for p in (*fleet.managers.managers, *fleet.workers)]
    needles = [n for v in VALUES for n in (v, base64.b64encode(v))]
    for text in answers + logs:
        leaked = [hashlib.sha256(n).hexdigest()[:8] for n in needles if n.decode() in text]
        assert not leaked, f"an answer or a log holds secret values (sha256 {leaked})"
    # Every byte the managers and workers keep on disk: warren.db, its WAL, the Raft log and snapshots,
    # worker.db, node.json, the process tasks' state and output files.
    scanned = 0
    for root in [m.data_dir for m in fleet.managers.managers] + [w.data_dir for w in fleet.workers]:
        for path in Path(root).rglob("*"):
            if path.is_file() and not path.is_symlink():
                content = path.read_bytes()
                scanned += 1
                leaked = [hashlib.sha256(n).hexdigest()[:8] for n in needles if n in content]
                if leaked:  # not `assert ... in content`: pytest would print the file
                    pytest.fail(f"{path} holds secret values (sha256 {leaked})")
    assert scanned > 5
    fleet.cli("service", "rm", "scan-user").ok()
    eventually(lambda: no_task_dirs(fleet), 30, "every task's secrets dir removed")
