"""What a task gets mounted besides its image: volumes, host paths and tmpfs (`spec.mounts`), and
configs (`spec.configs`).

A volume is node-local and named: a Docker volume on the docker runtime, a directory under the
worker's data dir for the process runtime (docs/volumes.md). A bind mount is a path of the node, which
a worker gives only under the roots it was started with (`--allow-bind`); a tmpfs is memory. A config
is a named, unencrypted file stored by the cluster (docs/configs.md), mounted read-only.

Every path is checked here: absolute and normalised (no `.`, `..`, `//`, trailing `/`), no control
character, bounded; the targets of a task's mounts and configs are distinct. Whether a node allows a
bind (and where its symlinks lead) is the scheduler's and the worker's to check.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from typing import Annotated, Final, Literal, Protocol

import msgspec
from msgspec import Meta

from warren.formats import NAME_PATTERN
from warren.spec.container import PATH_PATTERN, Path, normalised

MAX_MOUNTS: Final = 32
# The most volumes a node's inventory holds (what its worker reports, the node.volumes command).
MAX_NODE_VOLUMES: Final = 1024
MAX_SERVICE_CONFIGS: Final = 64
# Largest tmpfs a task may ask for (bytes); it is memory of the node.
MAX_TMPFS_BYTES: Final = 2**40

MountType = Literal["volume", "bind", "tmpfs"]
VolumeName = Annotated[str, Meta(pattern=NAME_PATTERN, max_length=63)]
# What a service does when the node holding its volume is down: wait for it (the task stays pending,
# saying why), or start again on another node with a new, empty volume.
VolumePolicy = Literal["wait", "reschedule"]
DEFAULT_VOLUME_POLICY: Final[VolumePolicy] = "wait"
# A config's file mode unless its reference says otherwise (read-only for everyone, as Swarm does).
DEFAULT_CONFIG_MODE: Final = 0o444
# Where secrets are mounted in a container: no mount or config may be put there or under it.
SECRETS_TARGET: Final = "/run/secrets"


class _Part(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """A mount or config reference: unknown fields refused, fields at their default unwritten."""


class Mount(_Part, frozen=True, kw_only=True):
    """volume: the node's volume `source` at `target`; bind: the node's path `source` at `target`;
    tmpfs: an empty memory filesystem of at most `size` bytes at `target` (no source)."""

    type: MountType
    target: Path
    source: str | None = None
    read_only: bool = False
    size: Annotated[int, Meta(ge=4096, le=MAX_TMPFS_BYTES)] | None = None  # tmpfs only; bytes

    def __post_init__(self) -> None:
        normalised("target", None, self.target)
        if self.target == "/":
            raise ValueError("target: cannot be / (the container's root)")
        if self.type == "tmpfs":
            if self.source is not None:
                raise ValueError("source: a tmpfs mount has no source")
            return
        if self.size is not None:
            raise ValueError(f"size: only a tmpfs mount has a size (this one is a {self.type})")
        if self.source is None:
            raise ValueError(f"source: a {self.type} mount needs a source")
        if self.type == "volume":
            if re.search(NAME_PATTERN, self.source) is None or "\n" in self.source:
                raise ValueError(
                    "source: a volume name is 1 to 63 lowercase letters, digits and '-', "
                    "starting and ending with a letter or digit"
                )
        else:
            if len(self.source) > 1024 or re.search(PATH_PATTERN, self.source) is None:
                raise ValueError(
                    "source: a bind mount's source is an absolute path of the node (at most 1024 of "
                    "A-Z a-z 0-9 . _ : + @ / -)"
                )
            normalised("source", None, self.source)

    @property
    def volume(self) -> str | None:
        """The name of the volume mounted, or None for a bind or tmpfs."""
        return self.source if self.type == "volume" else None


class ConfigRef(_Part, frozen=True, kw_only=True):
    """Config `name` (POST /v1/configs) given to the task at `target` (`/NAME` by default, as Swarm
    does) with file mode `mode`, read-only."""

    name: VolumeName
    target: Path | None = None
    mode: Annotated[int, Meta(ge=0, le=0o777)] = DEFAULT_CONFIG_MODE

    def __post_init__(self) -> None:
        # omit_defaults compares an int above 256 by identity: a decoded 0o444 is another object than
        # the default, and would be written (and change the task spec's digest) though it means the same.
        if self.mode == DEFAULT_CONFIG_MODE:
            msgspec.structs.force_setattr(self, "mode", DEFAULT_CONFIG_MODE)
        if self.target is not None:
            normalised("target", None, self.target)
            if self.target == "/":
                raise ValueError("target: cannot be /")

    @property
    def path(self) -> str:
        """Where the task finds it (its target, or /NAME)."""
        return self.target if self.target is not None else f"/{self.name}"


def check_targets(mounts: list[Mount], configs: list[ConfigRef]) -> None:
    """ValueError if two mounts or configs share a target, or one is at or under /run/secrets."""
    seen: set[str] = set()
    for where, target in [("mounts", m.target) for m in mounts] + [("configs", c.path) for c in configs]:
        if target in seen:
            raise ValueError(f"{where}: two mounts or configs at {target}")
        if target == SECRETS_TARGET or target.startswith(SECRETS_TARGET + "/"):
            raise ValueError(f"{where}: {target} is where secrets are mounted")
        seen.add(target)
    names = [c.name for c in configs]
    if len(names) != len(set(names)):
        raise ValueError("configs: a config is named twice")


# The process runtime gives a task each mount's path in its environment (docs/volumes.md):
# WARREN_MOUNT_<target, uppercased, every character but A-Z and 0-9 as _>=<path on the node>.
MOUNT_ENV_PREFIX: Final = "WARREN_MOUNT_"


def mount_env(target: str) -> str:
    """The variable that gives a process task the path of the mount at `target`
    (/var/lib/data -> WARREN_MOUNT_VAR_LIB_DATA)."""
    return MOUNT_ENV_PREFIX + re.sub(r"[^A-Z0-9]", "_", target.lstrip("/").upper())


class MountLike(Protocol):
    """A Mount, or the worker's copy of one (warren.runtime.base.MountPoint)."""

    @property
    def type(self) -> str: ...

    @property
    def target(self) -> str: ...

    @property
    def read_only(self) -> bool: ...


def unsupported_by_process(mounts: Sequence[MountLike]) -> list[str]:
    """What of `mounts` the process runtime cannot honour, each named as the spec's field: a tmpfs
    (a process has no mount namespace of its own), read_only (the task's user may write wherever the
    path allows), and a target whose variable (mount_env) is an earlier mount's."""
    unsupported: list[str] = []
    first: dict[str, int] = {}
    for i, mount in enumerate(mounts):
        if mount.type == "tmpfs":
            unsupported.append(f"mounts[{i}].type=tmpfs")
        elif mount.read_only:
            unsupported.append(f"mounts[{i}].read_only")
        env = mount_env(mount.target)
        if env in first:
            unsupported.append(f"mounts[{i}].target (its variable {env} is also mounts[{first[env]}]'s)")
        first.setdefault(env, i)
    return unsupported


def bind_sources(mounts: list[Mount]) -> list[str]:
    """The node paths of the bind mounts, in order, each once."""
    return list(dict.fromkeys(m.source for m in mounts if m.type == "bind" and m.source is not None))


def inventory_digest(entries: Iterable[tuple[str, str]]) -> str:
    """A short digest of a node's volume inventory, (name, driver) pairs in any order: the leader puts
    the stored one's in each session answer, and a worker whose own differs reports its list again."""
    text = "\n".join(f"{name}\t{driver}" for name, driver in sorted(set(entries)))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
