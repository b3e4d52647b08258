"""The docker runtime's mapping of a task's mounts to the SDK's `docker.types.Mount` (no engine here)."""

from __future__ import annotations

from warren.runtime.base import MountPoint, TaskRun
from warren.runtime.docker import docker_mounts


def run_with(*mounts: MountPoint) -> TaskRun:
    return TaskRun("t1", "s1", "db", 1, "db:1", None, {}, mounts=mounts)


def test_each_kind_of_mount_as_the_engine_takes_it() -> None:
    mounts = docker_mounts(run_with(
        MountPoint("volume", "/var/lib/db", "db-data"),
        MountPoint("bind", "/media", "/srv/media", read_only=True),
        MountPoint("tmpfs", "/cache", None, size=64 * 1024 * 1024),
        MountPoint("tmpfs", "/scratch"),
    ))
    assert mounts == [
        {"Target": "/var/lib/db", "Source": "db-data", "Type": "volume", "ReadOnly": False},
        {"Target": "/media", "Source": "/srv/media", "Type": "bind", "ReadOnly": True},
        {"Target": "/cache", "Source": None, "Type": "tmpfs", "ReadOnly": False,
         "TmpfsOptions": {"SizeBytes": 64 * 1024 * 1024}},
        {"Target": "/scratch", "Source": None, "Type": "tmpfs", "ReadOnly": False},
    ]
    assert docker_mounts(run_with()) == []
