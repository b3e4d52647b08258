"""The worker checks a task's spec again before a runtime sees it (issue 13, section 4)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import pytest

from warren.runtime.base import DeviceMapping, MountPoint, RuntimeStartError
from warren.spec.container import ContainerOptions, Device
from warren.spec.mounts import Mount
from warren.worker.taskspec import host_access, mount_points, spec_of, task_run


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


def mounts(*items: dict[str, Any]) -> list[Mount]:
    return [msgspec.convert(item, Mount) for item in items]


def test_mounts_reach_the_task_run_with_their_binds_checked(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "db").mkdir(parents=True)
    doc = task({"image": "nginx", "mounts": [
        {"type": "volume", "source": "db-data", "target": "/var/lib/db", "read_only": True},
        {"type": "bind", "source": f"{data}/db", "target": "/db"},
        {"type": "tmpfs", "target": "/cache", "size": 65536},
    ]})
    spec = spec_of(doc)
    points = mount_points(spec.mount_list, (str(data),))
    assert points == (
        MountPoint("volume", "/var/lib/db", "db-data", True),
        MountPoint("bind", "/db", f"{data}/db"),
        MountPoint("tmpfs", "/cache", None, False, 65536),
    )
    assert task_run(doc, spec, "worker-1", mounts=points).mounts == points


def test_a_bind_is_what_the_worker_allows(tmp_path: Path) -> None:
    allowed = tmp_path / "allowed"
    (allowed / "sub").mkdir(parents=True)
    (allowed / "escape").symlink_to("/etc")  # a link out of the allowed directory
    (tmp_path / "allowed-link").symlink_to(allowed)  # an allowed root given through a link
    (tmp_path / "allowedx").mkdir()
    roots = (str(allowed),)
    # An allowed root and a directory under it; a root given through a link allows its real path.
    assert mount_points(mounts({"type": "bind", "source": str(allowed), "target": "/a"}), roots)[0].source \
        == str(allowed)
    sub = mounts({"type": "bind", "source": f"{allowed}/sub", "target": "/a"})
    assert mount_points(sub, roots)[0].source == f"{allowed}/sub"
    assert mount_points(sub, (f"{tmp_path}/allowed-link",))[0].source == f"{allowed}/sub"
    # The real path is what the runtime is given.
    linked = mounts({"type": "bind", "source": f"{tmp_path}/allowed-link/sub", "target": "/a"})
    assert mount_points(linked, roots)[0].source == f"{allowed}/sub"
    with pytest.raises(RuntimeStartError, match=r"mounts\[0\]: bind mount of /etc is not allowed on this "
                                                 r"worker \(worker start --allow-bind\)"):
        mount_points(mounts({"type": "bind", "source": "/etc", "target": "/a"}), roots)
    with pytest.raises(RuntimeStartError, match=rf"mounts\[1\]: bind mount of {allowed}/escape \(resolves "
                                                 r"to /etc\) is not allowed"):
        mount_points(mounts({"type": "tmpfs", "target": "/t"},
                            {"type": "bind", "source": f"{allowed}/escape", "target": "/a"}), roots)
    # A sibling that only starts like an allowed path is outside it; nothing is allowed by default.
    with pytest.raises(RuntimeStartError, match="is not allowed"):
        mount_points(mounts({"type": "bind", "source": f"{tmp_path}/allowedx", "target": "/a"}), roots)
    with pytest.raises(RuntimeStartError, match="is not allowed"):
        mount_points(sub, ())
    with pytest.raises(RuntimeStartError, match=r"bind mount of .*/gone: no such file or directory"):
        mount_points(mounts({"type": "bind", "source": f"{allowed}/gone", "target": "/a"}), roots)
    # A path with `..` never gets here: the spec refuses it.
    with pytest.raises(msgspec.ValidationError, match="must be a normalised absolute path"):
        mounts({"type": "bind", "source": f"{allowed}/../x", "target": "/a"})
