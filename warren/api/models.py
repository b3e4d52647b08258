"""Request bodies of the API: strict pydantic models (unknown fields and wrong types are refused)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)
from pydantic_core import PydanticCustomError

from warren.config import MAX_ALLOW_BINDS, MAX_NODE_LABELS
from warren.formats import NAME_PATTERN, service_name_problem
from warren.spec import container as opts
from warren.spec import mounts, validate
from warren.spec import service as typed
from warren.spec.mounts import DEFAULT_VOLUME_POLICY, VolumePolicy
from warren.spec.ports import MAX_TASK_PORTS, task_ports_problem
from warren.spec.problems import problem
from warren.spec.publishing import default_mode
from warren.spec.service import field_default

# Every string from outside is checked before use (docs/security.md): names, keys and IDs by an
# anchored pattern (pydantic's Rust regex: `$` is the end of the text, never before a final newline);
# free text by warren.spec.validate: no control character at all (SafeText), or none but TAB and LF in
# what is passed verbatim to a process (ArgText: command arguments, env values); image references by
# the Docker reference grammar. A refusal is a 400 naming the field.
NoControl = AfterValidator(validate.no_control)

Name = Annotated[str, StringConstraints(pattern=NAME_PATTERN, max_length=63)]


def _service_name(value: object) -> object:
    problem_text = service_name_problem(value)
    if problem_text is not None:  # said in full, before the pattern's bare "should match pattern"
        raise PydanticCustomError("service_name", problem_text)
    return value


ServiceName = Annotated[Name, BeforeValidator(_service_name)]
# host:port as a manager advertises it; checked by formats.split_host_port in the handler.
Address = Annotated[str, StringConstraints(min_length=3, max_length=261), NoControl]
Token = Annotated[str, StringConstraints(min_length=1, max_length=200), NoControl]
# A PEM certificate signing request (the node's own key; name and role are the cluster's to decide).
Csr = Annotated[str, StringConstraints(min_length=1, max_length=8192)]
EnvKey = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", max_length=256)]
LabelKey = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._/-]*$", max_length=253)]
SafeText = Annotated[str, StringConstraints(max_length=4096), NoControl]
ArgText = Annotated[str, StringConstraints(max_length=4096), AfterValidator(validate.no_control_but_tab_lf)]
Image = Annotated[
    str,
    StringConstraints(min_length=1, max_length=validate.IMAGE_REF_MAX),
    AfterValidator(validate.image_ref),
]

MAX_REPLICAS = typed.MAX_REPLICAS


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class JoinTokenRequest(Strict):
    role: Literal["manager", "worker"]
    rotate: bool = False
    # Validity in seconds; None: the manager's join_token_ttl_s (24 h). At most 30 days.
    ttl_s: Annotated[float, Field(gt=0, le=30 * 86400)] | None = None


class ManagerJoinRequest(Strict):
    token: Token
    api_addr: Address
    raft_addr: Address
    csr: Csr


class RenewRequest(Strict):
    csr: Csr


class PromoteRequest(Strict):
    token: Token


Seconds = Annotated[float, Field(ge=0, le=86400)]
PositiveSeconds = Annotated[float, Field(gt=0, le=86400)]
Port = Annotated[int, Field(ge=1, le=65535)]
# node.labels.K==V or node.labels.K!=V (also node.name==N, node.role==worker|manager).
Constraint = Annotated[
    str,
    StringConstraints(
        pattern=r"^node\.(labels\.[A-Za-z0-9][A-Za-z0-9._/-]*|name|role)\s*(==|!=)\s*\S.*$", max_length=512
    ),
    NoControl,
]


# The service spec as the API's requests state it (pydantic: the API's error messages and /openapi.json).
# The spec itself is warren.spec.service: every default comes from there, the route turns a checked
# request into it, and tests/unit/spec/test_service.py holds the two to the same checks.


class Publish(Strict):
    """A published port: HOST (Docker's "published") reaches CONTAINER ("target") in the task. mode
    ingress: every worker listens on HOST and forwards to a healthy replica wherever it runs (TCP
    only); host: HOST on the task's own node. Without a mode: ingress, but host for a UDP port."""

    host: Port
    container: Port
    protocol: Literal["tcp", "udp"] = field_default(typed.Publish, "protocol")
    # Always written into the stored spec (a stored item without one means host: made before ingress).
    mode: typed.PublishMode = typed.DEFAULT_PUBLISH_MODE

    @model_validator(mode="before")
    @classmethod
    def _default_mode(cls, data: object) -> object:
        if isinstance(data, dict) and "mode" not in data:
            protocol = data.get("protocol", field_default(typed.Publish, "protocol"))
            if isinstance(protocol, str):
                return {**data, "mode": default_mode(protocol)}
        return data

    @model_validator(mode="after")
    def _tcp_ingress(self) -> Publish:
        if self.mode == "ingress" and self.protocol != "tcp":
            raise ValueError(f"publish {self.host}/{self.protocol}: ingress forwards TCP only; "
                             "publish UDP ports with mode=host")
        return self


class Resources(Strict):
    """Limits of each task (enforced by the runtime) and what the scheduler reserves on a node."""

    cpus: Annotated[float, Field(gt=0, le=1024)] | None = None
    memory: Annotated[int, Field(ge=4 * 1024 * 1024, le=2**50)] | None = None  # bytes


class RestartPolicy(Strict):
    """When a task that stopped is replaced: any exit, only a failure (exit code != 0), or never."""

    condition: Literal["any", "on-failure", "none"] = field_default(typed.RestartPolicy, "condition")
    delay_s: Seconds = field_default(typed.RestartPolicy, "delay_s")
    # Replacements per slot before giving up; 0: no limit.
    max_attempts: Annotated[int, Field(ge=0, le=1_000_000)] = field_default(
        typed.RestartPolicy, "max_attempts"
    )


class HealthCheck(Strict):
    """cmd: run `cmd` in the task (exit 0 = healthy); http: GET http://TASK:port/path answers 2xx/3xx;
    tcp: a TCP connection to TASK:port opens."""

    kind: Literal["cmd", "http", "tcp"]
    cmd: list[ArgText] | None = Field(default=None, max_length=256)
    port: Port | None = None
    path: Annotated[str, StringConstraints(pattern=r"^/\S*$", max_length=1024), NoControl] = field_default(
        typed.HealthCheck, "path"
    )
    interval_s: PositiveSeconds = field_default(typed.HealthCheck, "interval_s")
    timeout_s: PositiveSeconds = field_default(typed.HealthCheck, "timeout_s")
    retries: Annotated[int, Field(ge=1, le=100)] = field_default(typed.HealthCheck, "retries")
    start_period_s: Seconds = field_default(typed.HealthCheck, "start_period_s")

    @model_validator(mode="after")
    def _complete(self) -> HealthCheck:
        if self.kind == "cmd" and not self.cmd:
            raise ValueError("a cmd health check needs cmd")
        if self.kind in ("http", "tcp") and self.port is None:
            raise ValueError(f"a {self.kind} health check needs port")
        return self


class UpdatePolicy(Strict):
    """How a changed spec rolls out: `parallelism` tasks at a time, `delay_s` between batches."""

    parallelism: Annotated[int, Field(ge=1, le=MAX_REPLICAS)] = field_default(
        typed.UpdatePolicy, "parallelism"
    )
    delay_s: Seconds = field_default(typed.UpdatePolicy, "delay_s")
    order: Literal["stop-first", "start-first"] = field_default(typed.UpdatePolicy, "order")
    failure_action: Literal["pause", "rollback"] = field_default(typed.UpdatePolicy, "failure_action")
    monitor_s: Seconds = field_default(typed.UpdatePolicy, "monitor_s")


Path = Annotated[str, StringConstraints(pattern=opts.PATH_PATTERN, max_length=1024), NoControl]


class Device(Strict):
    """A device of the node (`host`) given to the task at `container` (the same path by default)."""

    host: Path
    container: Path | None = None
    permissions: opts.Permissions = field_default(opts.Device, "permissions")


class Ulimit(Strict):
    soft: Annotated[int, Field(ge=0, le=2**62)]
    hard: Annotated[int, Field(ge=0, le=2**62)]


class ContainerOptions(Strict):
    """Container options (warren.spec.container, where each is described and checked)."""

    user: Annotated[
        str, StringConstraints(pattern=opts.USER_PATTERN, max_length=129), NoControl
    ] | None = None
    workdir: Path | None = None
    hostname: Annotated[
        str, StringConstraints(pattern=opts.HOSTNAME_PATTERN, max_length=63), NoControl
    ] | None = None
    network: opts.Network = field_default(opts.ContainerOptions, "network")
    read_only: bool = False
    init: bool = False
    privileged: bool = False
    cap_add: list[opts.Capability] = Field(default_factory=list, max_length=opts.MAX_CAPABILITIES)
    cap_drop: list[opts.DroppedCapability] = Field(
        default_factory=list, max_length=opts.MAX_CAPABILITIES
    )
    devices: list[Device] = Field(default_factory=list, max_length=opts.MAX_DEVICES)
    ulimits: dict[opts.UlimitName, Ulimit] = Field(default_factory=dict, max_length=len(opts.ULIMITS))
    sysctls: dict[
        Annotated[str, StringConstraints(pattern=opts.SYSCTL_KEY_PATTERN, max_length=253), NoControl],
        Annotated[str, StringConstraints(max_length=1024), NoControl],
    ] = Field(default_factory=dict, max_length=opts.MAX_SYSCTLS)
    stop_signal: opts.Signal | None = None

    @model_validator(mode="after")
    def _consistent(self) -> ContainerOptions:
        # The rules across options (and of paths and sysctl names) are the typed spec's, said once.
        import msgspec

        try:
            msgspec.convert(self.model_dump(), opts.ContainerOptions)
        except msgspec.ValidationError as exc:
            raise ValueError(problem("container", str(exc)).removeprefix("container.")) from None
        return self


class Mount(Strict):
    """volume: the node's volume `source` at `target`; bind: the node's path `source` at `target`;
    tmpfs: an empty memory filesystem of at most `size` bytes at `target` (warren.spec.mounts, where
    each is described and checked)."""

    type: mounts.MountType
    target: Path
    source: Annotated[str, StringConstraints(max_length=1024), NoControl] | None = None
    read_only: bool = False
    size: Annotated[int, Field(ge=4096, le=mounts.MAX_TMPFS_BYTES)] | None = None  # tmpfs only; bytes

    @model_validator(mode="after")
    def _consistent(self) -> Mount:
        # The rules across fields (and of paths and names) are the typed spec's, said once.
        import msgspec

        try:
            msgspec.convert(self.model_dump(), mounts.Mount)
        except msgspec.ValidationError as exc:
            raise ValueError(str(exc)) from None
        return self


def _mount_targets(given: list[Mount]) -> list[Mount]:
    import msgspec

    mounts.check_targets([msgspec.convert(m.model_dump(), mounts.Mount) for m in given], [])
    return given


Mounts = Annotated[list[Mount], Field(max_length=mounts.MAX_MOUNTS), AfterValidator(_mount_targets)]


def _distinct(names: list[str]) -> list[str]:
    if len(names) != len(set(names)):
        raise ValueError("a secret is named twice")
    return names


MAX_SERVICE_SECRETS = typed.MAX_SERVICE_SECRETS
SecretNames = Annotated[list[Name], Field(max_length=MAX_SERVICE_SECRETS), AfterValidator(_distinct)]
# A secret's value in base64: up to ManagerSettings.max_secret_bytes (checked by the handler once decoded);
# the request body limit bounds this first.
SecretData = Annotated[str, StringConstraints(min_length=1, max_length=4 * 1024 * 1024)]


class SecretCreate(Strict):
    """A new secret: its name and its value in base64. The value is never echoed, even in errors."""

    name: Name
    data: SecretData = Field(repr=False)


# A config's content in base64: up to ManagerSettings.max_config_bytes (checked by the handler once
# decoded); bounded here as a secret's value is (warren.cli.specs.CONFIG_READ_LIMIT follows this bound).
ConfigData = SecretData


class ConfigCreate(Strict):
    """A new config: its name and its content in base64 (up to ManagerSettings.max_config_bytes)."""

    name: Name
    data: ConfigData = Field(repr=False)


class ConfigRef(Strict):
    """Config `name` (POST /v1/configs) given to each task at `target` (`/NAME` by default) with file
    mode `mode` (warren.spec.mounts.ConfigRef, where it is checked)."""

    name: Name
    target: Path | None = None
    mode: Annotated[int, Field(ge=0, le=0o777)] = field_default(mounts.ConfigRef, "mode")

    @model_validator(mode="after")
    def _consistent(self) -> ConfigRef:
        # The typed part's checks of the target (normalised, not /), said once.
        import msgspec

        try:
            msgspec.convert(self.model_dump(exclude_none=True), mounts.ConfigRef)
        except msgspec.ValidationError as exc:
            raise ValueError(str(exc)) from None
        return self


def _distinct_configs(refs: list[ConfigRef]) -> list[ConfigRef]:
    # Two configs at one target, or one under /run/secrets: the typed spec's rule, said once.
    import msgspec

    try:
        typed_refs = [msgspec.convert(r.model_dump(exclude_none=True), mounts.ConfigRef) for r in refs]
        mounts.check_targets([], typed_refs)
    except (msgspec.ValidationError, ValueError) as exc:
        raise ValueError(str(exc).removeprefix("configs: ")) from None
    return refs


ConfigRefs = Annotated[
    list[ConfigRef], Field(max_length=mounts.MAX_SERVICE_CONFIGS), AfterValidator(_distinct_configs)
]


class ServiceSpec(Strict):
    """What a service should be; the leader's reconciler turns it into tasks on workers."""

    image: Image
    driver: Literal["docker", "process"] = field_default(typed.ServiceSpec, "driver")
    command: list[ArgText] | None = Field(default=None, max_length=256)
    replicas: Annotated[int, Field(ge=0, le=MAX_REPLICAS)] = field_default(typed.ServiceSpec, "replicas")
    mode: Literal["replicated", "global"] = field_default(typed.ServiceSpec, "mode")
    env: dict[EnvKey, ArgText] = Field(default_factory=dict, max_length=256)
    labels: dict[LabelKey, SafeText] = Field(default_factory=dict, max_length=256)
    publish: list[Publish] = Field(default_factory=list, max_length=64)
    resources: Resources = Field(default_factory=Resources)
    constraints: list[Constraint] = Field(default_factory=list, max_length=32)
    restart: RestartPolicy = Field(default_factory=RestartPolicy)
    health: HealthCheck | None = None
    update: UpdatePolicy = Field(default_factory=UpdatePolicy)
    stop_timeout_s: PositiveSeconds = field_default(typed.ServiceSpec, "stop_timeout_s")
    # Names of secrets (POST /v1/secrets) each task gets: /run/secrets/NAME in a container, a file in
    # $WARREN_SECRETS_DIR for a process.
    secrets: SecretNames = Field(default_factory=list)
    container: ContainerOptions = Field(default_factory=ContainerOptions)
    # Volumes, bind mounts and tmpfs (docs/volumes.md).
    mounts: Mounts = Field(default_factory=list)
    # Configs (POST /v1/configs) each task gets as a read-only file (docs/configs.md).
    configs: ConfigRefs = Field(default_factory=list)
    # When the node holding a replica's volume cannot take it (docs/volumes.md): wait for that node
    # (the task stays pending, saying why), or reschedule it elsewhere onto a new, empty volume.
    volume_policy: VolumePolicy = DEFAULT_VOLUME_POLICY
    # Whether other tasks find this service's tasks by its name (docs/worker-protocol.md, endpoints);
    # changing it restarts no task.
    discovery: bool = typed.DEFAULT_DISCOVERY

    @model_validator(mode="after")
    def _consistent(self) -> ServiceSpec:
        if self.driver == "process" and not self.command:
            raise ValueError("a process-driver service needs command (there is no image to run)")
        ports = [(p.host, p.protocol) for p in self.publish]
        if len(ports) != len(set(ports)):
            raise ValueError("publish: the same host port is published twice")
        if self.container.network == "host" and self.publish:
            raise ValueError("publish: not with network host (the task binds the node's ports itself)")
        if self.driver == "process":
            for p in self.publish:
                if p.mode == "ingress" and p.host == p.container:
                    raise ValueError(
                        f"publish {p.host}: a process task binds its target port on its node itself and "
                        "the ingress listens on the published port: they must differ")
        return self


class ServiceCreate(ServiceSpec):
    name: ServiceName


class ServiceUpdate(Strict):
    """A partial spec: only the fields given change (nested parts are replaced whole)."""

    image: Image | None = None
    driver: Literal["docker", "process"] | None = None
    command: list[ArgText] | None = Field(default=None, max_length=256)
    replicas: Annotated[int, Field(ge=0, le=MAX_REPLICAS)] | None = None
    mode: Literal["replicated", "global"] | None = None
    env: dict[EnvKey, ArgText] | None = Field(default=None, max_length=256)
    labels: dict[LabelKey, SafeText] | None = Field(default=None, max_length=256)
    publish: list[Publish] | None = Field(default=None, max_length=64)
    resources: Resources | None = None
    constraints: list[Constraint] | None = Field(default=None, max_length=32)
    restart: RestartPolicy | None = None
    health: HealthCheck | None = None
    update: UpdatePolicy | None = None
    stop_timeout_s: PositiveSeconds | None = None
    secrets: SecretNames | None = None
    container: ContainerOptions | None = None
    mounts: Mounts | None = None
    configs: ConfigRefs | None = None
    volume_policy: VolumePolicy | None = None
    discovery: bool | None = None


class NodeAvailability(Strict):
    availability: Literal["active", "drain"]


class NodeLabels(Strict):
    """An operator's labels on a node: `add` set (replacing the same key), then `remove` taken away."""

    add: dict[LabelKey, SafeText] = Field(default_factory=dict, max_length=MAX_NODE_LABELS)
    remove: list[LabelKey] = Field(default_factory=list, max_length=MAX_NODE_LABELS)


# -- workers (docs/worker-protocol.md) ------------------------------------------------------------

# A worker's host (or host:port), checked by formats.split_host_port in the handler.
Host = Annotated[str, StringConstraints(min_length=1, max_length=261), NoControl]
# Node names and task IDs are Warren-minted (manager-2-ab12cd, worker-3f9a1c); also path and query
# parameters (warren.api.params, routes_services).
NODE_NAME_PATTERN = r"^[a-z0-9][a-z0-9-]{0,99}$"
TASK_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$"
NodeName = Annotated[str, StringConstraints(pattern=NODE_NAME_PATTERN)]
TaskId = Annotated[str, StringConstraints(pattern=TASK_ID_PATTERN)]
Digest = Annotated[str, StringConstraints(max_length=128)]
Labels = dict[LabelKey, SafeText]

MAX_STATUS_UPDATES = 5000


class WorkerResources(Strict):
    """What a worker offers (warren.runtime.base.NodeResources)."""

    cpus: Annotated[float, Field(ge=0, le=1_000_000)] | None = None
    memory: Annotated[int, Field(ge=0, le=2**60)] | None = None  # bytes
    drivers: list[Literal["docker", "process"]] = Field(default_factory=list, max_length=8)
    hostname: Annotated[str, StringConstraints(max_length=253), NoControl] = ""
    # Host access the worker allows (worker start --allow-privileged, --allow-device, --allow-bind).
    allow_privileged: bool = False
    allow_devices: list[Path] = Field(default_factory=list, max_length=opts.MAX_DEVICES)
    allow_binds: list[Path] = Field(default_factory=list, max_length=MAX_ALLOW_BINDS)


# At most this many volumes in a worker's inventory (docs/worker-protocol.md).
MAX_NODE_VOLUMES = mounts.MAX_NODE_VOLUMES


class NodeVolume(Strict):
    """A Warren volume a worker holds: a Docker volume, or a process runtime's directory."""

    name: Annotated[str, StringConstraints(pattern=NAME_PATTERN, max_length=63)]
    driver: Literal["docker", "process"]


def _distinct_volumes(volumes: list[NodeVolume]) -> list[NodeVolume]:
    if len({(v.name, v.driver) for v in volumes}) != len(volumes):
        raise ValueError("a volume is listed twice")
    return volumes


class WorkerJoinRequest(Strict):
    token: Token
    csr: Csr
    addr: Host
    labels: Labels = Field(default_factory=dict, max_length=256)
    resources: WorkerResources = Field(default_factory=WorkerResources)


class SessionRequest(Strict):
    node: NodeName
    # Digest of the assignments the worker has; None (or absent) on its very first call.
    known: Digest | None = None
    # Digest of the service endpoints the worker has (None: none). Absent: it does not ask for them.
    known_endpoints: Digest | None = None
    # Only on the first call after a worker starts: recorded if they changed.
    addr: Host | None = None
    labels: Labels | None = Field(default=None, max_length=256)
    resources: WorkerResources | None = None
    # The worker's volumes: on its first call after a start if it has any, then whenever they changed.
    volumes: Annotated[
        list[NodeVolume], Field(max_length=MAX_NODE_VOLUMES), AfterValidator(_distinct_volumes)
    ] | None = None


def _task_ports(value: dict[str, int]) -> dict[str, int]:
    problem_text = task_ports_problem(value)
    if problem_text is not None:
        raise PydanticCustomError("task_ports", problem_text)
    return value


class StatusUpdate(Strict):
    task_id: TaskId
    state: Literal["assigned", "starting", "running", "complete", "failed", "shutdown", "rejected"]
    # A worker's words (and a runtime's, e.g. Docker's error text): kept, with any control character
    # but TAB and LF written as an escape (\x1b), rather than refused with the whole batch.
    message: Annotated[str, StringConstraints(max_length=4096), AfterValidator(validate.escape_controls)] = ""
    at: Annotated[float, Field(ge=0, le=1e11)]  # the worker's wall clock, seconds since the epoch
    container_id: Annotated[str, StringConstraints(max_length=256), NoControl] | None = None
    exit_code: Annotated[int, Field(ge=-(2**31), le=2**31)] | None = None
    health: Literal["none", "starting", "healthy", "unhealthy"] | None = None
    # Where the task's node reaches its ingress publishes (warren.spec.ports), with its `running` update.
    ports: Annotated[
        dict[str, int], Field(max_length=MAX_TASK_PORTS), AfterValidator(_task_ports)
    ] | None = None


class StatusRequest(Strict):
    node: NodeName
    updates: list[StatusUpdate] = Field(max_length=MAX_STATUS_UPDATES)
