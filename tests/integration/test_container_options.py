"""Each container option of a service spec reaches the container: from the typed spec, through the
worker's host-access check and TaskRun, to the Docker Engine (read back with `docker inspect`).

Skipped when no engine answers, except under CI=1, where that is a failure. Every container a test
makes carries a cluster label unique to the test; the fixture removes them all, pass or fail.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.integration.images import TEST_IMAGE
from warren.runtime.base import LABEL_CLUSTER, RuntimeStartError
from warren.runtime.docker import DockerRuntime
from warren.spec.service import TaskSpec, decode
from warren.worker.taskspec import host_access, task_run


@pytest.fixture
def anyio_backend() -> Any:
    return ("asyncio", {"use_uvloop": True})  # what workers run on


@pytest.fixture
async def runtime(engine: Any) -> AsyncIterator[DockerRuntime]:
    cluster = f"test-{secrets.token_hex(4)}"
    rt = DockerRuntime(cluster, "node-a")
    yield rt
    await rt.close()
    for container in engine.containers.list(all=True, filters={"label": f"{LABEL_CLUSTER}={cluster}"}):
        container.remove(force=True)


async def start(runtime: DockerRuntime, task_id: str, options: dict[str, Any], *,
                allow_privileged: bool = False, allow_devices: tuple[str, ...] = ()) -> str:
    """Start a task whose spec has these container options, as a worker allowing this would."""
    spec = decode(TaskSpec, {"image": TEST_IMAGE, "command": ["sleep", "300"], "container": options})
    devices = host_access(spec.options, allow_privileged, allow_devices)
    doc = {"task_id": task_id, "service_id": "svc-1", "service_name": "hub", "slot": 1}
    return await runtime.start(task_run(doc, spec, "node-a", None, devices))


async def test_every_option_reaches_the_container(runtime: DockerRuntime, engine: Any) -> None:
    cid = await start(runtime, "t-all", {
        "user": "1000:1000", "workdir": "/tmp", "hostname": "hub-1", "read_only": True, "init": True,
        "cap_add": ["NET_ADMIN"], "cap_drop": ["MKNOD"], "stop_signal": "SIGINT",
        # /dev/null stands in for a USB radio.
        "devices": [{"host": "/dev/null", "container": "/dev/radio", "permissions": "rw"}],
        "ulimits": {"nofile": {"soft": 1024, "hard": 2048}},
        "sysctls": {"net.ipv4.ip_forward": "1", "kernel.shmmax": "65536"},
    }, allow_devices=("/dev/null",))
    attrs = engine.api.inspect_container(cid)
    config, host = attrs["Config"], attrs["HostConfig"]
    assert config["User"] == "1000:1000"
    assert config["WorkingDir"] == "/tmp"
    assert config["Hostname"] == "hub-1"
    assert config["StopSignal"] == "SIGINT"
    assert host["ReadonlyRootfs"] is True
    assert host["Init"] is True
    assert host["CapAdd"] == ["NET_ADMIN"] or host["CapAdd"] == ["CAP_NET_ADMIN"]
    assert host["CapDrop"] == ["MKNOD"] or host["CapDrop"] == ["CAP_MKNOD"]
    assert host["Devices"] == [{"PathOnHost": "/dev/null", "PathInContainer": "/dev/radio",
                                "CgroupPermissions": "rw"}]
    assert host["Ulimits"] == [{"Name": "nofile", "Soft": 1024, "Hard": 2048}]
    assert host["Sysctls"] == {"net.ipv4.ip_forward": "1", "kernel.shmmax": "65536"}
    assert host["Privileged"] is False
    assert host["NetworkMode"] != "host"
    # And the running container lives by them.
    assert await runtime.exec(cid, ["sh", "-c", '[ "$(id -u)" = 1000 ] && [ "$(hostname)" = hub-1 ]'], 5) == 0
    assert await runtime.exec(cid, ["sh", "-c", "[ -c /dev/radio ] && ! touch /x 2>/dev/null"], 5) == 0
    # The container's own limits, read off its first process (docker-init, parent of the task's
    # command): a `docker exec`'s shell may get other limits, depending on the engine's version.
    nofile = "grep -E '^Max open files +1024 +2048 +files' /proc/1/limits"
    assert await runtime.exec(cid, ["sh", "-c", nofile], 5) == 0


async def test_host_network(runtime: DockerRuntime, engine: Any) -> None:
    cid = await start(runtime, "t-host", {"network": "host"})
    assert engine.api.inspect_container(cid)["HostConfig"]["NetworkMode"] == "host"
    assert await runtime.address(cid) == "127.0.0.1"  # health checks reach its ports on the host


async def test_privileged(runtime: DockerRuntime, engine: Any) -> None:
    body = {"image": TEST_IMAGE, "command": ["sleep", "300"], "container": {"privileged": True}}
    spec = decode(TaskSpec, body)
    doc = {"task_id": "t-priv", "service_id": "svc-1", "service_name": "hub", "slot": 1}
    run = task_run(doc, spec, "node-a", None, host_access(spec.options, True, ()))
    try:
        cid = await runtime.start(run)
    except RuntimeStartError as exc:
        # An engine that is itself confined (a container without every capability) cannot start a
        # privileged container; what Warren asked of it is still checked, on a created one.
        if "apply caps" not in str(exc):
            raise
        cid = await runtime._run(lambda client: runtime._create(client, run, "warren-hub.1.t-priv"))
    assert engine.api.inspect_container(cid)["HostConfig"]["Privileged"] is True


async def test_a_worker_refuses_what_it_does_not_allow(runtime: DockerRuntime, tmp_path: Any) -> None:
    with pytest.raises(RuntimeStartError, match="privileged tasks are not allowed"):
        await start(runtime, "t-priv", {"privileged": True})
    with pytest.raises(RuntimeStartError, match="device /dev/null is not allowed"):
        await start(runtime, "t-dev", {"devices": [{"host": "/dev/null"}]}, allow_devices=("/dev/tty",))
    # A link inside an allowed directory that leads out of it is refused once resolved.
    allowed = tmp_path / "radios"
    allowed.mkdir()
    (allowed / "radio").symlink_to("/dev/null")
    with pytest.raises(RuntimeStartError, match=r"resolves to /dev/null\) is not allowed"):
        await start(runtime, "t-link", {"devices": [{"host": f"{allowed}/radio"}]},
                    allow_devices=(str(allowed),))
    assert await runtime.list() == []
