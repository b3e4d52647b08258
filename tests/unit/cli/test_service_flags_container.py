"""The container option flags of `warren service create | update` (service_flags.py): into the body's
`container` part, merged over the current part on update, and refused as usage errors naming the flag."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.unit.cli.fake_api import NOW, FakeManager, run

SPEC: dict[str, Any] = {
    "image": "hub:1", "driver": "docker", "command": None, "replicas": 1, "mode": "replicated",
    "stop_timeout_s": 10.0,
    "container": {"user": "1000", "cap_add": ["NET_ADMIN"], "devices": [{"host": "/dev/ttyUSB0"}],
                  "ulimits": {"nofile": {"soft": 1024, "hard": 1024}},
                  "sysctls": {"net.core.somaxconn": "512"}},
}
HUB = {"id": "svc-1", "name": "hub", "spec": SPEC, "version": 12, "created_at": NOW - 600,
       "updated_at": NOW - 60, "update_status": None, "has_previous": False,
       "replicas_running": 1, "replicas_desired": 1}


def created(request: httpx.Request) -> httpx.Response:
    body = json.loads(request.content)
    return httpx.Response(201, json={"id": "svc-9", "name": body["name"], "version": 7, "spec": body})


def patched(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json={**HUB, "version": 13, "spec": {**SPEC, **json.loads(request.content)}})


def test_every_container_flag_lands_in_the_container_part() -> None:
    fake = FakeManager({("POST", "/v1/services"): created})
    assert run(fake, "service", "create", "-d", "hub", "--image", "hub:1", "--user", "1000:dialout",
               "--workdir", "/srv", "--hostname", "hub-1", "--read-only", "--init", "--privileged",
               "--cap-add", "net_admin", "--cap-add", "CAP_SYS_TIME", "--cap-drop", "all",
               "--device", "/dev/ttyUSB0", "--device", "/dev/null:/dev/radio:wr",
               "--ulimit", "nofile=1024:4096", "--ulimit", "NPROC=64", "--sysctl", "net.ipv4.ip_forward=1",
               "--stop-signal", "int", "--stop-grace-period", "30s") == 0
    body = fake.body()
    assert body["stop_timeout_s"] == 30.0
    assert body["container"] == {
        "user": "1000:dialout", "workdir": "/srv", "hostname": "hub-1", "read_only": True, "init": True,
        "privileged": True, "cap_add": ["NET_ADMIN", "SYS_TIME"], "cap_drop": ["ALL"],
        "devices": [{"host": "/dev/ttyUSB0"},
                    {"host": "/dev/null", "container": "/dev/radio", "permissions": "rw"}],
        "ulimits": {"nofile": {"soft": 1024, "hard": 4096}, "nproc": {"soft": 64, "hard": 64}},
        "sysctls": {"net.ipv4.ip_forward": "1"}, "stop_signal": "SIGINT",
    }


def test_network_host_and_no_options() -> None:
    fake = FakeManager({("POST", "/v1/services"): created})
    assert run(fake, "service", "create", "-d", "a", "--image", "x", "--network", "host") == 0
    assert fake.body()["container"] == {"network": "host"}
    assert run(fake, "service", "create", "-d", "b", "--image", "x") == 0
    assert "container" not in fake.body()


@pytest.mark.parametrize(("flags", "expected"), [
    (["--cap-add", "CAP_FLY"], "argument --cap-add: Input should be 'AUDIT_CONTROL'"),
    (["--cap-add", "all"], "argument --cap-add: Input should be"),
    (["--cap-add", "chown", "--cap-drop", "chown"],
     "argument --cap-add: cap_add: CHOWN both added and dropped"),
    (["--device", "/dev/../etc/shadow"], "argument --device: devices[0].host: must be a normalised absolute"),
    (["--device", "dev/null"], "argument --device: String should match pattern"),
    (["--device", "/dev/null:/dev/x:rx"], "argument --device: permissions 'rx' in '/dev/null:/dev/x:rx'"),
    (["--device", "/a:/b:/c:d"], "argument --device: expected HOST_PATH[:CONTAINER_PATH[:PERMISSIONS]]"),
    (["--ulimit", "nofile"], "argument --ulimit: expected NAME=SOFT[:HARD]"),
    (["--ulimit", "nofile=many"], "argument --ulimit: expected SOFT[:HARD]"),
    (["--ulimit", "files=1"], "argument --ulimit: Input should be 'core'"),
    (["--ulimit", "nofile=2:1"], "argument --ulimit: ulimits"),
    (["--sysctl", "kernel.panic=1"], "argument --sysctl: sysctls: kernel.panic is not namespaced"),
    (["--sysctl", "vm.swappiness=1"], "argument --sysctl: sysctls: vm.swappiness is not namespaced"),
    (["--network", "host", "--sysctl", "net.core.somaxconn=1"], "argument --sysctl: sysctls: net.* cannot"),
    (["--network", "host", "--hostname", "a"],
     "argument --hostname: hostname: cannot be set with network host"),
    (["--network", "host", "--publish", "80:80"], "publish: not with network host"),
    (["--network", "none"], "argument --network: invalid choice: 'none'"),
    (["--stop-signal", "STOP"], "argument --stop-signal: Input should be 'SIGHUP'"),
    (["--user", "a b"], "argument --user: String should match pattern"),
    (["--user", "root\x1b[2J"], "argument --user: String should match pattern"),
    (["--workdir", "srv"], "argument --workdir: String should match pattern"),
    (["--workdir", "/srv/../etc"], "argument --workdir: workdir: must be a normalised absolute path"),
    (["--hostname=-x"], "argument --hostname: String should match pattern"),
])
def test_bad_container_flags_are_usage_errors(
    flags: list[str], expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    fake = FakeManager({("POST", "/v1/services"): created})
    assert run(fake, "service", "create", "-d", "hub", "--image", "hub:1", *flags) == 2
    err = capsys.readouterr().err
    assert err.startswith("warren: ") and expected in err, err
    assert fake.requests == []


def test_update_merges_over_the_current_container_part(capsys: pytest.CaptureFixture[str]) -> None:
    fake = FakeManager({("GET", "/v1/services/hub"): HUB, ("PATCH", "/v1/services/hub"): patched})
    assert run(fake, "service", "update", "-d", "hub", "--cap-drop", "NET_ADMIN", "--cap-add", "SYS_TIME",
               "--device", "/dev/null", "--device-rm", "/dev/ttyUSB0", "--ulimit", "nproc=10:20",
               "--ulimit-rm", "nofile", "--sysctl-rm", "net.core.somaxconn", "--user", "",
               "--read-only") == 0
    assert fake.body() == {"container": {
        "network": "bridge", "read_only": True, "init": False, "privileged": False,
        "cap_add": ["SYS_TIME"], "cap_drop": ["NET_ADMIN"],
        "devices": [{"host": "/dev/null", "permissions": "rwm"}],
        "ulimits": {"nproc": {"soft": 10, "hard": 20}}, "sysctls": {},
    }}
    assert "rolling out new tasks" in capsys.readouterr().out


def test_update_with_what_the_service_has_changes_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    fake = FakeManager({("GET", "/v1/services/hub"): HUB, ("PATCH", "/v1/services/hub"): patched})
    assert run(fake, "service", "update", "-d", "hub", "--user", "1000", "--cap-add", "net_admin",
               "--no-read-only", "--stop-timeout", "10s") == 0
    assert [r.method for r in fake.requests] == ["GET"]
    assert "unchanged" in capsys.readouterr().out


def test_help_names_every_container_flag(capsys: pytest.CaptureFixture[str]) -> None:
    fake = FakeManager({})
    assert run(fake, "service", "create", "--help") == 0
    out = capsys.readouterr().out
    for flag in ("--device", "--cap-add", "--cap-drop", "--network", "--user", "--workdir", "--hostname",
                 "--read-only", "--init", "--stop-signal", "--stop-grace-period", "--ulimit", "--sysctl",
                 "--privileged", "--allow-privileged", "--allow-device"):
        assert flag in out, flag


def test_inspect_shows_the_container_options(capsys: pytest.CaptureFixture[str]) -> None:
    fake = FakeManager({("GET", "/v1/services/hub"): HUB})
    assert run(fake, "service", "inspect", "hub") == 0
    out = capsys.readouterr().out
    for text in ("container", "NET_ADMIN", "/dev/ttyUSB0", "nofile", "net.core.somaxconn"):
        assert text in out, text
