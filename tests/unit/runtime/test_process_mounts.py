"""The process runtime's mounts: a volume is a directory under its volumes dir, a bind the checked
path, each given to the task as WARREN_MOUNT_<TARGET>; a tmpfs or read_only is refused."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from warren.runtime.base import MountPoint, RuntimeStartError, TaskRun
from warren.runtime.process import ProcessRuntime


def runtime(tmp_path: Path) -> ProcessRuntime:
    return ProcessRuntime("cluster-1", "node-a", str(tmp_path / "tasks"))


def run_with(*mounts: MountPoint) -> TaskRun:
    return TaskRun("t1", "s1", "db", 1, "db:1", ["true"], {}, mounts=mounts)


async def test_volumes_and_binds_are_paths_in_the_environment(tmp_path: Path) -> None:
    rt = runtime(tmp_path)
    assert rt.volumes_dir == tmp_path / "volumes"  # beside the task dirs by default
    assert await rt.volumes() == []
    env = rt._mounts(run_with(MountPoint("volume", "/var/lib/db", "db-data"),
                              MountPoint("bind", "/media-2", "/srv/media")))
    volume = tmp_path / "volumes" / "db-data"
    assert env == {"WARREN_MOUNT_VAR_LIB_DB": str(volume), "WARREN_MOUNT_MEDIA_2": "/srv/media",
                   "WARREN_VOLUMES_DIR": str(tmp_path / "volumes")}
    assert stat.S_IMODE(volume.stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "volumes").stat().st_mode) == 0o700
    (volume / "data").write_text("kept")
    # A later task of the volume finds what the earlier one left; a task without one gets no variable.
    rt._mounts(run_with(MountPoint("volume", "/data", "db-data")))
    assert (volume / "data").read_text() == "kept"
    assert rt._mounts(run_with(MountPoint("bind", "/media", "/srv/media"))) == {
        "WARREN_MOUNT_MEDIA": "/srv/media"}
    assert await rt.volumes() == ["db-data"]


async def test_volumes_are_listed_and_removed(tmp_path: Path) -> None:
    rt = ProcessRuntime("cluster-1", "node-a", str(tmp_path / "tasks"), volumes_dir=str(tmp_path / "v"))
    rt._mounts(run_with(MountPoint("volume", "/a", "b-vol"), MountPoint("volume", "/b", "a-vol")))
    (tmp_path / "v" / "a-vol" / "file").write_text("x")
    (tmp_path / "v" / "stray-file").write_text("not a volume")
    (tmp_path / "v" / "link").symlink_to(tmp_path)
    assert await rt.volumes() == ["a-vol", "b-vol"]
    await rt.remove_volume("a-vol")
    await rt.remove_volume("missing")  # no error
    await rt.remove_volume("link")  # not a volume: left alone
    await rt.remove_volume("../tasks")  # not a name
    assert await rt.volumes() == ["b-vol"]
    assert (tmp_path / "v" / "link").is_symlink()


@pytest.mark.parametrize(("mounts", "said"), [
    ((MountPoint("tmpfs", "/cache"),), "mounts[0].type=tmpfs: not supported by the process runtime"),
    ((MountPoint("volume", "/a", "v"), MountPoint("bind", "/b", "/srv", read_only=True)),
     "mounts[1].read_only: not supported by the process runtime"),
    ((MountPoint("volume", "/a-b", "v"), MountPoint("volume", "/a_b", "w")),
     "mounts[1].target (its variable WARREN_MOUNT_A_B is also mounts[0]'s): not supported"),
])
async def test_what_it_cannot_honour_is_refused(
    tmp_path: Path, mounts: tuple[MountPoint, ...], said: str
) -> None:
    rt = runtime(tmp_path)
    with pytest.raises(RuntimeStartError) as caught:
        await rt.start(run_with(*mounts))
    assert said in str(caught.value)
    assert not (tmp_path / "volumes").exists()  # refused before anything was made
    await rt.close()
