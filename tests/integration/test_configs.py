"""Configs on a real cluster: one manager, a Docker worker and a process worker (`warren worker start`).

A config's content reaches the tasks of the services that name it: a container reads it at its target,
read-only, with the mode asked; a process finds it in $WARREN_CONFIGS_DIR/NAME. `service update
--config-rm A --config-add B` rolls the task and the new one sees B. A config in use cannot be removed;
once no service names it, it can. The task's files go when the task goes.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.images import ensure_image
from tests.integration.workers import Fleet, docker_client, env_value, fleets, require_docker, task_processes
from warren.testing.wait import eventually

pytestmark = pytest.mark.integration

NGINX_V1 = b"server { listen 80; }\n"
NGINX_V2 = b"server { listen 8080; }\n"


@pytest.fixture(scope="module")
def fleet(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    require_docker()
    ensure_image()
    with fleets(tmp_path_factory.mktemp("configs"), request) as make:
        fleet = make()
        fleet.start_managers(1)
        for runtime in ("docker", "process"):
            fleet.add_worker(runtime, labels=[f"kind={runtime}"])
        yield fleet


def create_config(fleet: Fleet, tmp_path: Path, name: str, content: bytes) -> dict[str, Any]:
    path = tmp_path / name
    path.write_bytes(content)
    fleet.cli("config", "create", name, str(path)).ok()
    doc: dict[str, Any] = json.loads(fleet.cli("config", "inspect", name, "-o", "json").ok().stdout)
    return doc


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


def test_a_container_reads_its_configs_at_their_targets_with_their_modes(
    fleet: Fleet, tmp_path: Path
) -> None:
    create_config(fleet, tmp_path, "nginx-conf-v1", NGINX_V1)
    create_config(fleet, tmp_path, "motd-v1", b"hello\n")
    task = docker_service(fleet, "web", "--config", "nginx-conf-v1,target=/etc/nginx/default.conf,mode=0440",
                          "--config", "motd-v1")
    cid = task["container_id"]
    assert exec_in(cid, "cat", "/etc/nginx/default.conf") == (0, NGINX_V1)
    assert exec_in(cid, "stat", "-c", "%a", "/etc/nginx/default.conf") == (0, b"440\n")
    assert exec_in(cid, "cat", "/motd-v1") == (0, b"hello\n")  # the default target: /NAME
    assert exec_in(cid, "stat", "-c", "%a", "/motd-v1") == (0, b"444\n")
    code, _ = exec_in(cid, "sh", "-c", "echo x > /motd-v1")
    assert code != 0, "a config is mounted read-only"
    mounts = docker_client().api.inspect_container(cid)["Mounts"]
    [mount] = [m for m in mounts if m["Destination"] == "/motd-v1"]
    assert mount["RW"] is False and mount["Source"].endswith(f"/configs/tasks/{task['id']}/motd-v1")
    assert fleet.cli("config", "inspect", "motd-v1").ok().stdout.endswith("CONTENT:\nhello\n")
    listed = fleet.cli("config", "ls").ok().stdout
    assert "nginx-conf-v1" in listed and "web" in listed
    fleet.cli("service", "rm", "web").ok()
    eventually(lambda: not os.path.exists(mount["Source"]), 30, "the task's config files removed with it")
    fleet.cli("config", "rm", "nginx-conf-v1").ok()
    fleet.cli("config", "rm", "motd-v1").ok()


def test_a_process_finds_its_configs_in_its_configs_dir(fleet: Fleet, tmp_path: Path) -> None:
    create_config(fleet, tmp_path, "proc-conf-v1", NGINX_V1)
    script = 'grep -q "listen 80" "$WARREN_CONFIGS_DIR/proc-conf-v1" && exec sleep 100000'
    fleet.cli(
        "service", "create", "--detach", "proc-configs", "--driver", "process", "--image", "none",
        "--command", f"sh -c '{script}'", "--config", "proc-conf-v1,mode=0400",
        "--constraint", "node.labels.kind==process",
    ).ok()  # fmt: skip
    [task] = fleet.wait_running("proc-configs", 1)
    pids = eventually(lambda: task_processes(f"WARREN_TASK_ID={task['id']}"), 15, "the task's process")
    directory = env_value(pids[0], "WARREN_CONFIGS_DIR")
    path = Path(directory, "proc-conf-v1")
    assert path.read_bytes() == NGINX_V1 and stat.S_IMODE(path.stat().st_mode) == 0o400
    assert directory.endswith(f"/configs/tasks/{task['id']}")
    fleet.cli("service", "rm", "proc-configs").ok()
    eventually(lambda: not os.path.exists(directory), 30, "the task's config files removed with it")
    fleet.cli("config", "rm", "proc-conf-v1").ok()


def test_switching_configs_rolls_the_task_and_removal_waits_for_the_last_user(
    fleet: Fleet, tmp_path: Path
) -> None:
    create_config(fleet, tmp_path, "app-conf-v1", NGINX_V1)
    create_config(fleet, tmp_path, "app-conf-v2", NGINX_V2)
    unknown = fleet.cli("service", "create", "-d", "ghost", "--image", ensure_image(), "--config", "nope-v1")
    assert unknown.returncode == 1 and "no config named 'nope-v1'" in unknown.stderr, str(unknown)
    again = fleet.cli("config", "create", "app-conf-v1", str(tmp_path / "app-conf-v2"))
    assert again.returncode == 1 and "configs are immutable" in again.stderr, str(again)
    old = docker_service(fleet, "app", "--config", "app-conf-v1,target=/etc/app.conf")
    assert exec_in(old["container_id"], "cat", "/etc/app.conf") == (0, NGINX_V1)
    refused = fleet.cli("config", "rm", "app-conf-v1")
    assert refused.returncode == 1 and "in use by service app" in refused.stderr, str(refused)

    fleet.cli("service", "update", "--detach", "app", "--config-rm", "app-conf-v1",
              "--config-add", "app-conf-v2,target=/etc/app.conf").ok()
    new = eventually(
        lambda: next((t for t in fleet.wait_running("app", 1) if t["id"] != old["id"]), None),
        60, "the task rolled",
    )
    assert exec_in(new["container_id"], "cat", "/etc/app.conf") == (0, NGINX_V2)
    # The spec no longer names v1: it can go; v2 is in use.
    fleet.cli("config", "rm", "app-conf-v1").ok()
    refused = fleet.cli("config", "rm", "app-conf-v2")
    assert refused.returncode == 1 and "in use by service app" in refused.stderr, str(refused)
    fleet.cli("service", "rm", "app").ok()
    fleet.cli("config", "rm", "app-conf-v2").ok()
    assert json.loads(fleet.cli("config", "ls", "-o", "json").ok().stdout) == []
