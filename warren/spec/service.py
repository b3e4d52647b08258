"""The service spec as one typed object: what a service should be, with every default and bound of it.

`ServiceSpec` is decoded (and defaulted) once, where a spec enters Warren: an API request, `warren
apply -f`, or the JSON the store keeps (services.spec, tasks.spec, snapshots). Its field defaults are
the only place the spec's defaults live. The bounds are msgspec constraints, checked when a spec is
decoded; the checks that a constraint cannot say (control characters, the image grammar, a field that
needs another) run in `__post_init__`, so a decoded spec is a valid one.

`TaskSpec` is the part of a service spec a task is made from: a change to any of its fields rolls out
new tasks; a change to the others (replicas, mode, labels, update policy) does not. `ServiceSpec`
extends it, so each field is declared once; `ServiceSpec.task_spec()` cuts the task part out.

Wire form: the JSON of the fields (msgspec.to_builtins), every field written but `container` (the
container options), which is written only when an option is set, and then only the options set, and
`mounts`, `configs` and `volume_policy`, written only when not empty (not the default), and `discovery`,
written only when off. The digest of a
task spec leaves out `secrets` while empty, so tasks of services made before secrets existed keep
theirs, and the others while unset, so those made before they existed did.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Annotated, Any, Final, Literal, TypeVar

import msgspec
import orjson
from msgspec import UNSET, Meta, UnsetType

from warren.errors import InvalidError
from warren.formats import NAME_PATTERN
from warren.spec import validate
from warren.spec.container import ContainerOptions
from warren.spec.mounts import (
    DEFAULT_VOLUME_POLICY,
    MAX_MOUNTS,
    MAX_SERVICE_CONFIGS,
    ConfigRef,
    Mount,
    VolumePolicy,
    check_targets,
)
from warren.spec.problems import problem

MAX_REPLICAS: Final = 10_000
MAX_SERVICE_SECRETS: Final = 64
# Whether a service's tasks can be found by its name (docs/worker-protocol.md, "endpoints").
DEFAULT_DISCOVERY: Final = True

Port = Annotated[int, Meta(ge=1, le=65535)]
Seconds = Annotated[float, Meta(ge=0, le=86400)]
PositiveSeconds = Annotated[float, Meta(gt=0, le=86400)]
# Patterns are searched with Python's re (where `$` also matches before a final newline); a newline
# is a control character, which __post_init__ refuses in every string a pattern checks.
Name = Annotated[str, Meta(pattern=NAME_PATTERN, max_length=63)]
EnvKey = Annotated[str, Meta(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", max_length=256)]
LabelKey = Annotated[str, Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9._/-]*$", max_length=253)]
# Free text (no control character: checked in __post_init__) and what is passed verbatim to a process
# (no control character but TAB and LF).
SafeText = Annotated[str, Meta(max_length=4096)]
ArgText = Annotated[str, Meta(max_length=4096)]
Image = Annotated[str, Meta(min_length=1, max_length=validate.IMAGE_REF_MAX)]
# node.labels.K==V or node.labels.K!=V (also node.name==N, node.role==worker|manager).
Constraint = Annotated[
    str,
    Meta(pattern=r"^node\.(labels\.[A-Za-z0-9][A-Za-z0-9._/-]*|name|role)\s*(==|!=)\s*\S.*$", max_length=512),
]
Driver = Literal["docker", "process"]
PublishMode = Literal["ingress", "host"]
# The mode of a published port whose input names none (API, CLI, apply).
DEFAULT_PUBLISH_MODE: Final = "ingress"


class _Part(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A spec or a part of one: a field too many is refused, not dropped."""


class Publish(_Part, frozen=True):
    """A published port: HOST (Docker's "published") reaches CONTAINER ("target") in the task.

    mode ingress: every worker listens on HOST and forwards each connection to a healthy replica, on
    whichever node it runs (docs/networking.md); host: HOST on the task's own node only. Unset means host:
    a spec stored before ingress existed keeps its meaning and its digest. Every spec made through the API,
    the CLI or apply names its mode (ingress unless asked otherwise).
    """

    host: Port
    container: Port
    protocol: Literal["tcp", "udp"] = "tcp"
    mode: PublishMode | UnsetType = UNSET

    def __post_init__(self) -> None:
        if self.mode == "ingress" and self.protocol != "tcp":
            raise ValueError(f"publish {self.host}/{self.protocol}: ingress forwards TCP only; "
                             "publish UDP ports with mode=host")

    @property
    def ingress(self) -> bool:
        """Whether every worker forwards HOST to the service's healthy replicas."""
        return self.mode == "ingress"


class Resources(_Part, frozen=True):
    """Limits of each task (enforced by the runtime) and what the scheduler reserves on a node."""

    cpus: Annotated[float, Meta(gt=0, le=1024)] | None = None
    memory: Annotated[int, Meta(ge=4 * 1024 * 1024, le=2**50)] | None = None  # bytes


class RestartPolicy(_Part, frozen=True):
    """When a task that stopped is replaced: any exit, only a failure (exit code != 0), or never."""

    condition: Literal["any", "on-failure", "none"] = "any"
    delay_s: Seconds = 0.0  # before a replacement starts
    max_attempts: Annotated[int, Meta(ge=0, le=1_000_000)] = 0  # replacements per slot; 0: no limit

    def allows(self, failed: bool, restarts: int) -> bool:
        """Whether a task that ended (`failed`: not a clean exit 0) after `restarts` restarts in its
        slot is replaced."""
        if self.condition == "none" or (self.condition == "on-failure" and not failed):
            return False
        return self.max_attempts <= 0 or restarts < self.max_attempts


class HealthCheck(_Part, frozen=True):
    """cmd: run `cmd` in the task (exit 0 = healthy); http: GET http://TASK:port/path answers 2xx/3xx;
    tcp: a TCP connection to TASK:port opens."""

    kind: Literal["cmd", "http", "tcp"]
    cmd: Annotated[list[ArgText], Meta(max_length=256)] | None = None
    port: Port | None = None
    path: Annotated[str, Meta(pattern=r"^/\S*$", max_length=1024)] = "/"
    interval_s: PositiveSeconds = 5.0  # between probes
    timeout_s: PositiveSeconds = 2.0  # a probe taking longer fails
    retries: Annotated[int, Meta(ge=1, le=100)] = 3  # failed probes in a row before unhealthy
    start_period_s: Seconds = 0.0  # failures in this first time after the start do not count

    def __post_init__(self) -> None:
        if self.kind == "cmd" and not self.cmd:
            raise ValueError("a cmd health check needs cmd")
        if self.kind in ("http", "tcp") and self.port is None:
            raise ValueError(f"a {self.kind} health check needs port")
        _args("cmd", self.cmd or ())
        _text("path", self.path)


class UpdatePolicy(_Part, frozen=True):
    """How a changed spec rolls out: `parallelism` tasks at a time, `delay_s` between batches; a task
    counts as updated once it has run for `monitor_s` (and is healthy, if the spec has a check)."""

    parallelism: Annotated[int, Meta(ge=1, le=MAX_REPLICAS)] = 1
    delay_s: Seconds = 0.0
    order: Literal["stop-first", "start-first"] = "stop-first"
    failure_action: Literal["pause", "rollback"] = "pause"
    monitor_s: Seconds = 2.0


class TaskSpec(_Part, frozen=True, kw_only=True):
    """What a task is made of (the fields of a service spec that define its tasks)."""

    driver: Driver = "docker"
    image: Image
    command: Annotated[list[ArgText], Meta(max_length=256)] | None = None
    env: Annotated[dict[EnvKey, ArgText], Meta(max_length=256)] = msgspec.field(default_factory=dict)
    publish: Annotated[list[Publish], Meta(max_length=64)] = msgspec.field(default_factory=list)
    resources: Resources = msgspec.field(default_factory=Resources)
    constraints: Annotated[list[Constraint], Meta(max_length=32)] = msgspec.field(default_factory=list)
    restart: RestartPolicy = msgspec.field(default_factory=RestartPolicy)
    health: HealthCheck | None = None
    stop_timeout_s: PositiveSeconds = 10.0  # from the stop signal to the kill
    # Names of secrets (POST /v1/secrets) each task gets: /run/secrets/NAME in a container, a file in
    # $WARREN_SECRETS_DIR for a process.
    secrets: Annotated[list[Name], Meta(max_length=MAX_SERVICE_SECRETS)] = msgspec.field(default_factory=list)
    # Container options (warren.spec.container); unset (and unwritten) while every option is off, so the
    # specs written before they existed keep their digest.
    container: ContainerOptions | UnsetType = UNSET
    # Volumes, binds and tmpfs (warren.spec.mounts); configs (POST /v1/configs) as read-only files.
    # Unset (and unwritten) while empty, like `container`.
    mounts: Annotated[list[Mount], Meta(max_length=MAX_MOUNTS)] | UnsetType = UNSET
    configs: Annotated[list[ConfigRef], Meta(max_length=MAX_SERVICE_CONFIGS)] | UnsetType = UNSET

    def __post_init__(self) -> None:
        if self.container == ContainerOptions():
            msgspec.structs.force_setattr(self, "container", UNSET)
        for name in ("mounts", "configs"):
            if getattr(self, name) == []:
                msgspec.structs.force_setattr(self, name, UNSET)
        try:
            validate.image_ref(self.image)
        except ValueError as exc:
            raise ValueError(f"image: {exc}") from None
        if self.driver == "process" and not self.command:
            raise ValueError("a process-driver service needs command (there is no image to run)")
        _args("command", self.command or ())
        for key, value in self.env.items():
            _text("env", key)
            _text_arg(f"env[{key}]", value)
        ports = [(p.host, p.protocol) for p in self.publish]
        if len(ports) != len(set(ports)):
            raise ValueError("publish: the same host port is published twice")
        for constraint in self.constraints:
            _text("constraints", constraint)
        if len(self.secrets) != len(set(self.secrets)):
            raise ValueError("secrets: a secret is named twice")
        for name in self.secrets:
            _text("secrets", name)
        if self.driver == "process":
            for p in self.publish:
                if p.ingress and p.host == p.container:
                    raise ValueError(
                        f"publish {p.host}: a process task binds its target port on its node itself and the "
                        "ingress listens on the published port: they must differ")
        options = self.options
        if options.network == "host" and self.publish:
            raise ValueError("publish: not with network host (the task binds the node's ports itself)")
        check_targets(self.mount_list, self.config_list)

    @property
    def options(self) -> ContainerOptions:
        """The container options, every one off if the spec sets none."""
        return _NO_OPTIONS if isinstance(self.container, UnsetType) else self.container

    @property
    def mount_list(self) -> list[Mount]:
        """The mounts (empty if none)."""
        return [] if isinstance(self.mounts, UnsetType) else self.mounts

    @property
    def config_list(self) -> list[ConfigRef]:
        """The configs given to each task (empty if none)."""
        return [] if isinstance(self.configs, UnsetType) else self.configs

    @property
    def volumes(self) -> list[str]:
        """The names of the volumes mounted, in order, each once."""
        return list(dict.fromkeys(m.source for m in self.mount_list if m.type == "volume" and m.source))


class ServiceSpec(TaskSpec, frozen=True, kw_only=True):
    """What a service should be; the leader's reconciler turns it into tasks on workers."""

    replicas: Annotated[int, Meta(ge=0, le=MAX_REPLICAS)] = 1  # tasks of a replicated service
    mode: Literal["replicated", "global"] = "replicated"  # global: one task on every eligible node
    labels: Annotated[dict[LabelKey, SafeText], Meta(max_length=256)] = msgspec.field(default_factory=dict)
    update: UpdatePolicy = msgspec.field(default_factory=UpdatePolicy)
    # When the node holding a replica's volume is down (docs/volumes.md): "wait" (the default, and
    # unset while it is, so it is unwritten) or "reschedule" onto a new, empty volume.
    volume_policy: VolumePolicy | UnsetType = UNSET
    # Whether workers are told where its tasks are, so that other tasks find it by name (on by default,
    # and unset while it is, so it is unwritten; not a task field: changing it restarts no task).
    discovery: bool | UnsetType = UNSET

    def __post_init__(self) -> None:
        if self.volume_policy == DEFAULT_VOLUME_POLICY:
            msgspec.structs.force_setattr(self, "volume_policy", UNSET)
        if self.discovery == DEFAULT_DISCOVERY:
            msgspec.structs.force_setattr(self, "discovery", UNSET)
        super().__post_init__()
        for key, value in self.labels.items():
            _text("labels", key)
            _text(f"labels.{key}", value)

    @property
    def on_volume_node_down(self) -> VolumePolicy:
        """What a replica whose volume's node is down does: "wait" or "reschedule"."""
        return DEFAULT_VOLUME_POLICY if isinstance(self.volume_policy, UnsetType) else self.volume_policy

    @property
    def discoverable(self) -> bool:
        """Whether other tasks find this service's tasks by its name."""
        return DEFAULT_DISCOVERY if isinstance(self.discovery, UnsetType) else self.discovery

    def task_spec(self) -> TaskSpec:
        """The task-defining part of this spec."""
        return TaskSpec(**{name: getattr(self, name) for name in TASK_FIELDS})


_NO_OPTIONS: Final = ContainerOptions()

# The fields a task is made of, in the order a task spec is written.
TASK_FIELDS: Final = TaskSpec.__struct_fields__


def _text(where: str, value: str) -> None:
    found = validate.control_char(value)
    if found is not None:
        raise ValueError(f"{where}: must not contain control characters (found {found})")


def _args(where: str, values: list[str] | tuple[str, ...]) -> None:
    for i, value in enumerate(values):
        _text_arg(f"{where}[{i}]", value)


def _text_arg(where: str, value: str) -> None:
    """What is passed verbatim to a process: TAB and LF are allowed (multi-line scripts, PEM values)."""
    found = validate.control_char(value, multiline=True)
    if found is not None:
        raise ValueError(
            f"{where}: must not contain NUL or control characters other than tab and newline (found {found})"
        )


# -- decoding, the wire form, the digest -----------------------------------------------------------

S = TypeVar("S", bound=_Part)


def decode(cls: type[S], data: bytes | str | Mapping[str, Any]) -> S:
    """A spec (or part) from JSON text or from the objects JSON or YAML decode to, defaulted and checked;
    InvalidError naming the field ("spec.health.port: ...") if it is not a valid one. Strict: a
    string is not a number, nor a number a bool (an int may stand for a float)."""
    try:
        if isinstance(data, bytes | str):
            return msgspec.json.decode(data, type=cls)
        return msgspec.convert(data, cls)
    except msgspec.ValidationError as exc:
        raise InvalidError(problem("spec", str(exc))) from None
    except msgspec.DecodeError as exc:
        raise InvalidError(f"spec: not JSON: {exc}") from None


def to_doc(spec: _Part) -> dict[str, Any]:
    """The wire form of a spec or part: every field, in declared order."""
    doc: dict[str, Any] = msgspec.to_builtins(spec)
    return doc


def spec_digest(spec: TaskSpec) -> str:
    """A short digest of a task spec (of a service spec's task part): tasks of another digest are
    outdated. The same stored spec gives the same digest in every Warren version (keys sorted, and
    `secrets` left out while empty, as before services had secrets)."""
    task = spec.task_spec() if isinstance(spec, ServiceSpec) else spec
    doc = to_doc(task)
    if not task.secrets:
        del doc["secrets"]
    return hashlib.sha256(orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]


def field_default(cls: type[msgspec.Struct], name: str) -> Any:
    """The default of a field (for help texts: the CLI states the defaults, never repeats them)."""
    for info in msgspec.structs.fields(cls):
        if info.name == name:
            if info.default is not msgspec.NODEFAULT:
                return info.default
            if info.default_factory is not msgspec.NODEFAULT:
                return info.default_factory()
    raise KeyError(f"{cls.__name__}.{name} has no default")
