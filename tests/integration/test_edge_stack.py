"""examples/edge-stack.yaml on a real cluster: `warren apply -f` brings up the broker (a volume), the
hub (a device and a config) and the web service (read-only, a tmpfs) on a Docker worker allowing
/dev/null, as `make run`'s does; the broker's data survives its container being killed; applying the
file again changes nothing."""

from __future__ import annotations

import contextlib
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.images import ensure_image
from tests.integration.nodeproc import REPO_ROOT
from tests.integration.workers import Fleet, docker_client, fleets, require_docker
from warren.testing.wait import eventually

pytestmark = pytest.mark.integration

STACK = REPO_ROOT / "examples" / "edge-stack.yaml"
SERVICES = ("broker", "hub", "web")
VOLUME = "broker-data"  # the example's own name


@pytest.fixture(scope="module")
def fleet(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    require_docker()
    ensure_image()
    engine = docker_client()
    try:
        with fleets(tmp_path_factory.mktemp("edge"), request) as make:
            f = make()
            f.start_managers(1)
            f.add_worker("docker", extra=["--allow-device", "/dev/null"])
            yield f
    finally:
        with contextlib.suppress(Exception):
            engine.volumes.get(VOLUME).remove(force=True)


def container(fleet: Fleet, service: str) -> Any:
    (task,) = fleet.wait_running(service, 1)
    (found,) = docker_client().containers.list(filters={"label": f"warren.task={task['id']}"})
    return found


def get(port: int, path: str) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as answer:
        return str(answer.read().decode())


def boots(fleet: Fleet) -> list[str]:
    code, out = container(fleet, "broker").exec_run(["cat", "/data/www/boots.log"])
    assert code == 0, out
    return [line for line in out.decode().splitlines() if line]


def test_the_edge_stack_comes_up_keeps_its_data_and_applies_idempotently(fleet: Fleet) -> None:
    out = fleet.cli("apply", "--detach", "-f", str(STACK)).ok().stdout
    assert out.splitlines() == [
        "config/hub-conf-v1 created", "service/broker created", "service/hub created", "service/web created",
    ]
    for service in SERVICES:
        eventually(lambda s=service: [t for t in fleet.running(s) if t["health"] == "healthy"], 60,
                   f"{service} running and healthy", detail=lambda: fleet.log_tails())

    # broker: its volume holds one boot; killed, its replacement finds it and adds its own.
    assert len(boots(fleet)) == 1
    assert get(1883, "/boots.log").startswith("booted ")
    (first,) = fleet.running("broker")
    container(fleet, "broker").kill(signal="SIGKILL")
    eventually(lambda: [t for t in fleet.running("broker") if t["id"] != first["id"]], 60,
               "a new broker task")
    assert len(boots(fleet)) == 2
    mounts = container(fleet, "broker").attrs["Mounts"]
    assert [(m["Type"], m["Name"], m["Destination"]) for m in mounts] == [("volume", VOLUME, "/data")]
    assert VOLUME in fleet.cli("volume", "ls").ok().stdout

    # hub: the stand-in radio and the config, read-only, at their paths.
    hub = container(fleet, "hub")
    devices = hub.attrs["HostConfig"]["Devices"]
    assert devices == [
        {"PathOnHost": "/dev/null", "PathInContainer": "/dev/ttyUSB0", "CgroupPermissions": "rw"}
    ]
    code, conf = hub.exec_run(["cat", "/etc/hub/hub.conf"])
    assert code == 0 and b"radio=/dev/ttyUSB0" in conf
    assert hub.exec_run(["sh", "-c", "echo x > /etc/hub/hub.conf"])[0] != 0

    # web: answers, on a read-only root with a writable tmpfs.
    assert "<" in get(8089, "/")
    web = container(fleet, "web")
    assert web.attrs["HostConfig"]["ReadonlyRootfs"] is True
    assert web.exec_run(["touch", "/tmp/ok"])[0] == 0 and web.exec_run(["touch", "/www/no"])[0] != 0

    # The same file again: nothing changes.
    again = fleet.cli("apply", "--detach", "-f", str(STACK)).ok().stdout
    assert again.splitlines() == [
        "config/hub-conf-v1 unchanged", "service/broker unchanged", "service/hub unchanged",
        "service/web unchanged",
    ]
    for service in SERVICES:
        fleet.cli("service", "rm", service).ok()
