"""The worker checks a task's spec again before a runtime sees it (issue 13, section 4)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from warren.runtime.base import DeviceMapping, RuntimeStartError
from warren.spec.container import ContainerOptions, Device
from warren.worker.taskspec import host_access, spec_of, task_run


def task(spec: dict[str, Any]) -> dict[str, Any]:
    return {"task_id": "t1", "service_id": "s1", "service_name": "web", "slot": 1, "spec": spec}


@pytest.mark.parametrize(
    ("spec", "said"),
    [
        ({"image": "../x"}, "spec.image: not a valid image reference"),
        ({"image": "nginx\n"}, "spec.image: not a valid image reference"),
        ({"image": "nginx", "command": ["sh", "a\x00b"]}, "spec.command[1]: must not contain NUL"),
        ({"image": "nginx", "env": {"A": "\x1b"}}, "spec.env[A]: must not contain NUL or control characters"),
        ({"image": "nginx", "env": {"A=B": "x"}}, "spec.env: a key: Expected `str` matching regex"),
        ({"image": "nginx", "health": {"kind": "cmd", "cmd": ["x\x1b"]}}, "spec.health.cmd[0]: must not"),
    ],
)
def test_the_worker_refuses_to_hand_a_runtime_a_bad_spec(spec: dict[str, Any], said: str) -> None:
    with pytest.raises(RuntimeStartError) as caught:
        spec_of(task(spec))
    assert said in str(caught.value)
    assert "\x1b" not in str(caught.value) and "\x00" not in str(caught.value)  # never the value itself


def test_the_worker_passes_a_good_spec_through() -> None:
    doc = task({"image": "nginx:1.27", "command": ["sh", "-c", "a\nb"], "env": {"PEM": "x\ny"}})
    run = task_run(doc, spec_of(doc), "worker-1")
    assert run.image == "nginx:1.27" and run.command == ["sh", "-c", "a\nb"] and run.env["PEM"] == "x\ny"


def test_the_container_options_reach_the_task_run() -> None:
    doc = task({"image": "nginx", "container": {"user": "1000", "devices": [{"host": "/dev/null"}]}})
    spec = spec_of(doc)
    devices = host_access(spec.options, False, ("/dev/null",))
    assert devices == (DeviceMapping("/dev/null", "/dev/null", "rwm"),)
    run = task_run(doc, spec, "worker-1", None, devices)
    assert run.options.user == "1000" and run.devices == devices


def test_host_access_is_what_the_worker_allows(tmp_path: Path) -> None:
    radios = tmp_path / "radios"
    radios.mkdir()
    (radios / "one").symlink_to("/dev/null")  # a link out of the allowed directory
    (radios / "two").touch()
    (tmp_path / "radios-link").symlink_to(radios)  # an allowed root given through a link
    assert host_access(ContainerOptions(), False, ()) == ()
    with pytest.raises(RuntimeStartError, match="privileged tasks are not allowed"):
        host_access(ContainerOptions(privileged=True), False, ())
    assert host_access(ContainerOptions(privileged=True), True, ()) == ()
    with pytest.raises(RuntimeStartError, match=r"device /dev/null is not allowed on this worker"):
        host_access(ContainerOptions(devices=[Device(host="/dev/null")]), True, ())
    with pytest.raises(RuntimeStartError, match=rf"device {radios}/one \(resolves to /dev/null\) is not"):
        host_access(ContainerOptions(devices=[Device(host=f"{radios}/one")]), False, (str(radios),))
    # Symlinks are resolved on both sides: the real path is what the runtime is given.
    two = Device(host=f"{tmp_path}/radios-link/two", container="/dev/radio", permissions="r")
    assert host_access(ContainerOptions(devices=[two]), False, (f"{tmp_path}/radios-link",)) == (
        DeviceMapping(f"{radios}/two", "/dev/radio", "r"),
    )
    # A sibling that only starts like an allowed path is outside it.
    with pytest.raises(RuntimeStartError, match="is not allowed"):
        host_access(ContainerOptions(devices=[Device(host="/dev/nullx")]), False, ("/dev/null",))
