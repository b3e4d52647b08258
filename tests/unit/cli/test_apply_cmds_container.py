"""`warren apply -f` and the `container:` key: the text forms people write (devices, ulimits,
capabilities, signals, YAML's numbers) into the API's part, and refusals named by field."""

from __future__ import annotations

import pytest

from warren.cli import specs
from warren.cli.apply_cmds import load

HUB = """\
name: hub
image: hub:1
container:
  user: 1000
  workdir: /srv/hub
  read_only: true
  init: true
  cap_add: [net_admin, CAP_SYS_TIME]
  cap_drop: [all]
  devices: [/dev/ttyUSB0, "/dev/video0:/dev/cam:r", {host: /dev/null, container: /dev/radio}]
  ulimits: {nofile: "1024:4096", nproc: 64, core: {soft: 0, hard: 0}}
  sysctls: {net.ipv4.ip_forward: 1, kernel.shmmax: "65536"}
  stop_signal: int
"""


def test_a_container_part_in_every_syntax() -> None:
    [document], problems = load([("hub.yaml", HUB)])
    assert problems == []
    assert document.wanted["container"] == {
        "user": "1000", "workdir": "/srv/hub", "network": "bridge", "read_only": True,
        "init": True, "privileged": False, "cap_add": ["NET_ADMIN", "SYS_TIME"], "cap_drop": ["ALL"],
        "devices": [{"host": "/dev/ttyUSB0", "permissions": "rwm"},
                    {"host": "/dev/video0", "container": "/dev/cam", "permissions": "r"},
                    {"host": "/dev/null", "container": "/dev/radio", "permissions": "rwm"}],
        "ulimits": {"nofile": {"soft": 1024, "hard": 4096}, "nproc": {"soft": 64, "hard": 64},
                    "core": {"soft": 0, "hard": 0}},
        "sysctls": {"net.ipv4.ip_forward": "1", "kernel.shmmax": "65536"}, "stop_signal": "SIGINT",
    }


@pytest.mark.parametrize(("container", "expected"), [
    ("{sysctls: {kernel.panic: 1}}", "container: sysctls: kernel.panic is not namespaced"),
    ("{devices: [/dev/../etc/shadow]}", "container: devices[0].host: must be a normalised absolute path"),
    ("{devices: [42]}", "container: expected HOST_PATH[:CONTAINER_PATH[:PERMISSIONS]], e.g."),
    ("{ulimits: {nofile: lots}}", "container: expected SOFT[:HARD]"),
    ("{cap_add: [fly]}", "container.cap_add.0: Input should be"),
    ("{stop_signal: 99}", "container.stop_signal: Input should be"),
    ("{privileged: yes-please}", "container.privileged: Input should be a valid boolean"),
    ("{network: host, hostname: a}", "container: hostname: cannot be set with network host"),
    ("{user: \"a\\nb\"}", "container.user: String should match pattern"),
    ("[read_only]", "container: Input should be a valid dictionary"),
])
def test_a_bad_container_part_is_named(container: str, expected: str) -> None:
    text = f"name: hub\nimage: hub:1\ncontainer: {container}\n"
    documents, problems = load([("hub.yaml", text)])
    assert documents == []
    assert len(problems) == 1 and expected in problems[0], problems


@pytest.mark.parametrize(("value", "expected"), [
    ("term", "SIGTERM"), ("SIGINT", "SIGINT"), (15, "SIGTERM"), ("9", "SIGKILL"), (999, "999"),
])
def test_stop_signals_however_written(value: object, expected: str) -> None:
    assert specs.stop_signal(value) == expected


def test_the_device_text_form() -> None:
    assert specs.parse_device("/dev/a") == {"host": "/dev/a"}
    assert specs.parse_device("/dev/a:/dev/b") == {"host": "/dev/a", "container": "/dev/b"}
    assert specs.parse_device("/dev/a::mwr") == {"host": "/dev/a", "permissions": "rwm"}
    for bad in ("", ":/dev/b", "/dev/a:/dev/b:rr", "/dev/a:/dev/b:x", "/a:/b:r:extra"):
        with pytest.raises(ValueError):
            specs.parse_device(bad)
