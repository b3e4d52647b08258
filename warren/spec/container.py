"""The container options of a task spec (`spec.container`): who a task runs as, where, with which
devices, capabilities, limits and kernel parameters, and how it is stopped.

Every option is off (None, empty, False) by default, and a part whose options are all off is the same
as no part: the wire form writes only the options that are set (`omit_defaults`), and a task spec
without any leaves `container` out, so the digest of every spec written before these options existed
stays what it was.

Each value is checked here, bounded, with no control character: capabilities, signals and ulimits from
known lists; sysctls only in the namespaces a container has of its own (net.*, kernel.shm*,
kernel.msg*, kernel.sem, fs.mqueue.*), since any other would change the node's kernel; device paths
absolute and normalised (no `.`, `..` or `//`). What a worker allows (privileged tasks, which devices)
is the scheduler's and the worker's to check (`warren worker start --allow-privileged --allow-device`).
"""

from __future__ import annotations

import posixpath
from collections.abc import Sequence
from typing import Annotated, Final, Literal, get_args

import msgspec
from msgspec import Meta

from warren.spec import validate

# The capabilities of Linux (capabilities(7)), named as Docker takes them (without "CAP_").
Capability = Literal[
    "AUDIT_CONTROL", "AUDIT_READ", "AUDIT_WRITE", "BLOCK_SUSPEND", "BPF", "CHECKPOINT_RESTORE", "CHOWN",
    "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "IPC_LOCK", "IPC_OWNER", "KILL", "LEASE",
    "LINUX_IMMUTABLE", "MAC_ADMIN", "MAC_OVERRIDE", "MKNOD", "NET_ADMIN", "NET_BIND_SERVICE",
    "NET_BROADCAST", "NET_RAW", "PERFMON", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_ADMIN",
    "SYS_BOOT", "SYS_CHROOT", "SYS_MODULE", "SYS_NICE", "SYS_PACCT", "SYS_PTRACE", "SYS_RAWIO",
    "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "SYSLOG", "WAKE_ALARM",
]
CAPABILITIES: Final = frozenset(get_args(Capability))
# cap_drop may also name ALL (then cap_add names what is kept); cap_add may not: that is --privileged's
# job, which a worker must allow.
DroppedCapability = Capability | Literal["ALL"]

# Signals that ask a process to stop (signal(7)); STOP, TSTP, CONT, CHLD and the like do not.
Signal = Literal[
    "SIGHUP", "SIGINT", "SIGQUIT", "SIGABRT", "SIGKILL", "SIGUSR1", "SIGUSR2", "SIGALRM", "SIGTERM",
    "SIGWINCH", "SIGPWR",
]
SIGNALS: Final = frozenset(get_args(Signal))

# Resource limits (setrlimit(2)) by the names of Docker's --ulimit and util-linux prlimit's options.
UlimitName = Literal[
    "core", "cpu", "data", "fsize", "locks", "memlock", "msgqueue", "nice", "nofile", "nproc", "rss",
    "rtprio", "rttime", "sigpending", "stack",
]
ULIMITS: Final = frozenset(get_args(UlimitName))
UlimitValue = Annotated[int, Meta(ge=0, le=2**62)]

# Kernel parameters a container has its own copy of (Docker's namespaced sysctls): prefixes, and the
# one exact name.
SYSCTL_PREFIXES: Final = ("net.", "kernel.shm", "kernel.msg", "fs.mqueue.")
SYSCTL_NAMES: Final = frozenset({"kernel.sem"})
SYSCTL_KEY_PATTERN: Final = r"^[a-z][a-z0-9_]*(\.[A-Za-z0-9_@:-]+)+$"
SysctlKey = Annotated[str, Meta(pattern=SYSCTL_KEY_PATTERN, max_length=253)]
SysctlValue = Annotated[str, Meta(max_length=1024)]

# An absolute path on a node or in a container (a device, a working directory).
PATH_PATTERN: Final = r"^/[A-Za-z0-9._:+@/-]*$"
Path = Annotated[str, Meta(pattern=PATH_PATTERN, max_length=1024)]
# Device permissions, as cgroups write them: read, write, mknod; each once, in this order.
Permissions = Literal["r", "w", "m", "rw", "rm", "wm", "rwm"]
# user or uid, optionally :group or :gid (the image's or the host's names).
USER_PATTERN: Final = r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,63})?$"
User = Annotated[str, Meta(pattern=USER_PATTERN, max_length=129)]
# A host name of one or more RFC 1123 labels; 63 characters at most (the kernel's limit is 64).
_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?"
HOSTNAME_PATTERN: Final = rf"^{_LABEL}(\.{_LABEL})*$"
Hostname = Annotated[str, Meta(pattern=HOSTNAME_PATTERN, max_length=63)]
Network = Literal["bridge", "host"]

MAX_DEVICES: Final = 64
MAX_CAPABILITIES: Final = len(CAPABILITIES) + 1
MAX_SYSCTLS: Final = 64

# The options the process runtime has an equivalent for; a process task asking for any other is not
# placed (the scheduler says "not supported by the process runtime").
PROCESS_OPTIONS: Final = frozenset({"user", "workdir", "stop_signal", "ulimits"})


class _Part(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """A part of the container options: unknown fields refused, options left at their default unwritten."""


class Device(_Part, frozen=True):
    """A device of the node (`host`) given to the task at `container` (the same path by default)."""

    host: Path
    container: Path | None = None
    permissions: Permissions = "rwm"

    def __post_init__(self) -> None:
        for where, path in (("host", self.host), ("container", self.container)):
            if path is not None:
                normalised(where, None, path)


class Ulimit(_Part, frozen=True):
    """A resource limit: `soft` (what the task gets) up to `hard` (what it may raise it to)."""

    soft: UlimitValue
    hard: UlimitValue

    def __post_init__(self) -> None:
        if self.soft > self.hard:
            raise ValueError("soft: must not be above hard")


class ContainerOptions(_Part, frozen=True, kw_only=True):
    """How a task's container (or process) is set up beyond its image, command and env."""

    user: User | None = None  # user[:group] the command runs as; the image's (docker) or the worker's
    workdir: Path | None = None  # working directory; the image's (docker) or the task's directory
    hostname: Hostname | None = None  # the container's host name; docker's default: its short ID
    network: Network = "bridge"  # host: the node's own network stack (no --publish needed or allowed)
    read_only: bool = False  # the container's root filesystem is mounted read-only
    init: bool = False  # a tiny init (docker-init) runs as PID 1, forwarding signals, reaping zombies
    privileged: bool = False  # every capability and device: only on workers started --allow-privileged
    cap_add: Annotated[list[Capability], Meta(max_length=MAX_CAPABILITIES)] = msgspec.field(
        default_factory=list
    )
    cap_drop: Annotated[list[DroppedCapability], Meta(max_length=MAX_CAPABILITIES)] = msgspec.field(
        default_factory=list
    )
    devices: Annotated[list[Device], Meta(max_length=MAX_DEVICES)] = msgspec.field(default_factory=list)
    ulimits: Annotated[dict[UlimitName, Ulimit], Meta(max_length=len(ULIMITS))] = msgspec.field(
        default_factory=dict
    )
    sysctls: Annotated[dict[SysctlKey, SysctlValue], Meta(max_length=MAX_SYSCTLS)] = msgspec.field(
        default_factory=dict
    )
    stop_signal: Signal | None = None  # sent to stop the task; the image's STOPSIGNAL (docker) or SIGTERM

    def __post_init__(self) -> None:
        # A pattern's `$` also matches before a final newline: every string is checked for controls.
        for where, text in (("user", self.user), ("hostname", self.hostname)):
            if text is not None:
                _text(where, text)
        if self.workdir is not None:
            normalised("workdir", None, self.workdir)
        for where, caps in (("cap_add", self.cap_add), ("cap_drop", self.cap_drop)):
            if len(caps) != len(set(caps)):
                raise ValueError(f"{where}: a capability is named twice")
        both = set(self.cap_add) & set(self.cap_drop)
        if both:
            raise ValueError(f"cap_add: {', '.join(sorted(both))} both added and dropped")
        targets = [d.container or d.host for d in self.devices]
        if len(targets) != len(set(targets)):
            raise ValueError("devices: two devices at the same container path")
        for key, value in self.sysctls.items():
            _text("sysctls", key)
            if not sysctl_namespaced(key):
                raise ValueError(
                    f"sysctls: {key} is not namespaced: only net.*, kernel.shm*, kernel.msg*, kernel.sem and "
                    "fs.mqueue.* can be set for one task (any other would change the node's kernel)"
                )
            _text(f"sysctls.{key}", value)
        if self.network == "host":
            if self.hostname is not None:
                raise ValueError("hostname: cannot be set with network host (the task has the node's)")
            if any(key.startswith("net.") for key in self.sysctls):
                raise ValueError("sysctls: net.* cannot be set with network host (they are the node's own)")

    def set_options(self) -> list[str]:
        """The names of the options set (not at their default), in declared order."""
        return list(msgspec.to_builtins(self))

    def unsupported_by_process(self) -> list[str]:
        """The options set that the process runtime has no equivalent for."""
        return [name for name in self.set_options() if name not in PROCESS_OPTIONS]


def sysctl_namespaced(key: str) -> bool:
    """Whether kernel parameter `key` is one a container has its own copy of."""
    return key in SYSCTL_NAMES or key.startswith(SYSCTL_PREFIXES)


def normalised(field: str, part: str | None, path: str) -> str:
    """`path` unchanged if it is absolute and normal (no `.`, `..`, `//` or trailing `/`); ValueError
    naming `field` (and `part`) otherwise."""
    where = field if part is None else f"{field}.{part}"
    _text(where, path)
    if posixpath.normpath(path) != path or path.startswith("//"):
        raise ValueError(f"{where}: must be a normalised absolute path (no '.', '..', '//' or trailing '/')")
    return path


def under(path: str, roots: Sequence[str]) -> bool:
    """Whether normalised absolute `path` is one of `roots` or inside one of them."""
    return any(path == root or path.startswith(root.rstrip("/") + "/") for root in roots)


def _text(where: str, value: str) -> None:
    found = validate.control_char(value)
    if found is not None:
        raise ValueError(f"{where}: must not contain control characters (found {found})")
