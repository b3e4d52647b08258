"""The commands replicated through Raft, and their versioned wire codec.

A command is small and field-level, and carries everything apply needs to be deterministic: IDs and
timestamps are minted by the proposer (`at` is the proposer's wall clock, seconds since the epoch).

Wire form: one JSON object `{"v": CODEC_VERSION, "op": "<op>", ...fields}` (orjson), every field
written, in the order its class declares them. Each command is a frozen msgspec Struct tagged by its
op, and msgspec checks a decoded one against its class (an int is not a bool, a float field takes an
int, a Literal only its values). `decode` refuses an unknown version or op, a missing or unknown field,
or a field of the wrong type with a `CommandError`, which apply turns into an error response: a bad
command never stops a manager.
"""

from __future__ import annotations

import typing
from typing import Annotated, Any, ClassVar, Literal

import msgspec
import orjson

from warren.spec import taskstate
from warren.spec.mounts import MAX_NODE_VOLUMES, VolumeName
from warren.spec.ports import TaskPorts
from warren.spec.problems import problem
from warren.spec.service import ServiceSpec, TaskSpec

CODEC_VERSION = 1

# Command versions, for managers of mixed Warren versions during a rolling upgrade (enforced by
# warren.manager.versions): every command Warren had when versions began is of version 1; a command
# added later, or one given a field an older decoder refuses, is listed in SINCE with the version that
# brought it, and COMMAND_VERSION rises with it. Each manager advertises COMMAND_VERSION; the leader
# proposes a command only when every manager applies its version.
BASE_COMMAND_VERSION = 1
# The highest command version this Warren applies.
COMMAND_VERSION = 5
# op -> the command version that brought it, for ops newer than BASE_COMMAND_VERSION.
SINCE: dict[str, int] = {
    "config.create": 3,
    "config.remove": 3,
    "node.volumes": 3,
    "volume.remove": 3,
    "cluster.note": 5,
}
# A spec's container options (warren.spec.container), which an older decoder refuses as an unknown
# field: a command that carries them (a created service or task, an update that names them) is of
# this version; the same command without them stays of its op's.
CONTAINER_OPTIONS_SINCE = 2
# Mounts, configs and the volume policy (warren.spec.mounts), refused by an older decoder likewise.
MOUNTS_SINCE = 3
# The spec fields written only when set, with the command version that brought each.
SPEC_FIELDS_SINCE: dict[str, int] = {
    "container": CONTAINER_OPTIONS_SINCE,
    "mounts": MOUNTS_SINCE,
    "configs": MOUNTS_SINCE,
    "volume_policy": MOUNTS_SINCE,
    # Service discovery's opt-out (issue 17): written only when off; 3 was not released without it.
    "discovery": MOUNTS_SINCE,
}
# A published port's mode (ingress, issue 17), refused by an older decoder as an unknown field; and a
# task status that carries the host ports of a task's ingress publishes (TaskStatus.ports), likewise.
PUBLISH_MODE_SINCE = 4

# An integer field as SQLite stores it (64 bits, signed). JSON allows larger ones, which SQLite cannot
# bind: a command carrying one would stop every manager at its entry; refused at decode instead.
Int64 = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]

Role = Literal["manager", "worker"]
NodeState = Literal["ready", "down", "joining"]
Availability = Literal["active", "drain"]


class CommandError(Exception):
    """A command cannot be applied; `code` is the API error code (invalid, conflict, not_found, ...)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def in_use(what: str, services: list[str], fix: str) -> CommandError:
    """The conflict of removing `what` (e.g. "secret 'db'") while `services` name it; `fix` says how."""
    noun = "service" if len(services) == 1 else "services"
    return CommandError("conflict", f"{what} is in use by {noun} {', '.join(services)}: {fix}")


class UnknownCommandError(CommandError):
    """A command this Warren does not know (a newer Warren's?): refused like a malformed one, but its
    refusal means this manager's state may now differ from the others', so it is logged loudly."""

    def __init__(self, message: str) -> None:
        super().__init__("invalid", message)


class _Record(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A command or a part of one: refused whole if it has a field too many or too few."""


class _Command(_Record, frozen=True, tag_field="op"):
    """A replicated command, written with its class's tag as its op."""

    # The tag, for reading (set below for every command class, from its tag).
    OP: ClassVar[str]


class ManagerRecord(_Record, frozen=True):
    """A manager as recorded in the nodes table."""

    name: str
    raft_id: Int64
    api_addr: str
    raft_addr: str


class InitCluster(_Command, frozen=True, tag="cluster.init"):
    """First command of a new cluster: its ID and the founding manager."""

    cluster_id: str
    at: float
    manager: ManagerRecord


class SetClusterCA(_Command, frozen=True, tag="pki.ca"):
    """The cluster CA, recorded once by the founder: its certificate (PEM) and its private key sealed
    with the cluster data key (base64), so any manager can sign after a failover."""

    ca_cert: str
    ca_key_sealed: str
    at: float


class RecordCert(_Command, frozen=True, tag="pki.cert"):
    """A node certificate was issued (by its SHA-256): kept until it expires, so that removing the
    node revokes it."""

    fingerprint: str
    node: str
    role: str
    expires_at: float
    at: float


class CreateToken(_Command, frozen=True, tag="token.create"):
    """A join token, as its SHA-256 only. With `rotate`, every earlier token of the role is revoked."""

    token_id: str
    role: Role
    hash: str
    at: float
    expires_at: float
    rotate: bool


class RegisterManager(_Command, frozen=True, tag="manager.register"):
    """A manager asks to join with a token (its hash): checked here, atomically with rotation."""

    name: str
    api_addr: str
    raft_addr: str
    token_hash: str
    at: float


class SetNodeState(_Command, frozen=True, tag="node.state"):
    """A node is up (`ready`) or written down (`down`, by the leader after its heartbeat grace)."""

    name: str
    state: str
    at: float


class RegisterWorker(_Command, frozen=True, tag="worker.register"):
    """A worker joins with a token (its hash, checked here). `secret_hash` is the SHA-256 of the
    session secret the worker was given; its later calls present the secret."""

    name: str
    token_hash: str
    secret_hash: str
    addr: str
    labels: dict[str, Any]
    resources: dict[str, Any]
    at: float


class UpdateNode(_Command, frozen=True, tag="node.update"):
    """A worker that resumed reports its address, labels and resources again."""

    name: str
    addr: str
    labels: dict[str, Any]
    resources: dict[str, Any]
    at: float


class SetNodeAvailability(_Command, frozen=True, tag="node.availability"):
    """`drain` moves a node's tasks away and places none there; `active` undoes it."""

    name: str
    availability: Availability
    at: float


class RemoveNode(_Command, frozen=True, tag="node.remove"):
    name: str
    at: float


class CreateService(_Command, frozen=True, tag="service.create"):
    service_id: str
    name: str
    spec: ServiceSpec
    at: float


class UpdateService(_Command, frozen=True, tag="service.update"):
    """Field-level change of a service's spec: only the keys in `changes` are replaced."""

    name: str
    changes: dict[str, Any]
    at: float
    if_version: Int64 | None = None


class RemoveService(_Command, frozen=True, tag="service.remove"):
    name: str
    at: float
    if_version: Int64 | None = None


class RollbackService(_Command, frozen=True, tag="service.rollback"):
    """Back to the spec before the last update (the current one becomes the previous)."""

    name: str
    at: float
    if_version: Int64 | None = None
    # A user's rollback (`service rollback`): the same apply records update_status rollback_started,
    # so no reconcile pass can see the rolled-back spec with the update's old status and report on it
    # (it used to be a second command). The reconciler's own rollback leaves this False and sets its
    # status, with the failure's reason, in the same batch.
    requested: bool = False


class SetUpdateStatus(_Command, frozen=True, tag="service.update_status"):
    """Progress of a rolling update as the reconciler sees it: {"state": "updating" | "paused" |
    "completed" | "rollback_started" | "rollback_completed", "message": ..., "started_at": ...};
    None clears it."""

    name: str
    status: dict[str, Any] | None
    at: float


class NewTask(_Record, frozen=True):
    """A task the reconciler creates: placed on `node` (state assigned) or not (state pending, with
    the reason in `message`). `spec` is the task-defining part of the service spec, `spec_digest` its
    digest (warren.spec.service.spec_digest). Global-mode tasks have no slot."""

    task_id: str
    service_id: str
    slot: Int64 | None
    node: str | None
    state: Literal["assigned", "pending"]
    message: str
    spec: TaskSpec
    spec_digest: str


class CreateTasks(_Command, frozen=True, tag="task.create"):
    tasks: list[NewTask]
    at: float


class Assignment(_Record, frozen=True):
    """A pending task placed on a node now (state pending -> assigned), or still pending with a new
    reason (`node` None)."""

    task_id: str
    node: str | None
    message: str


class AssignTasks(_Command, frozen=True, tag="task.assign"):
    assignments: list[Assignment]
    at: float


class TaskStatus(_Record, frozen=True):
    """What a worker (or the reconciler, for a node that went down) says about a task. `node`, when
    given, must be the task's node: a worker only reports its own tasks. A move backwards
    (taskstate.can_move) is ignored, not refused, so one stale report does not fail a batch.

    `ports` (warren.spec.ports): where the task's node reaches its ingress publishes, replacing the
    stored ones (an empty object clears them); UNSET, left out of the wire form (an older decoder
    refuses the field), keeps them."""

    task_id: str
    state: str
    message: str
    at: float
    node: str | None = None
    container_id: str | None = None
    exit_code: Int64 | None = None
    health: str | None = None
    ports: TaskPorts | msgspec.UnsetType = msgspec.UNSET


class SetTaskStatuses(_Command, frozen=True, tag="task.status"):
    updates: list[TaskStatus]


class SetTasksDesired(_Command, frozen=True, tag="task.desired"):
    """Ask tasks to stop (`shutdown`): scale down, rolling update, drain. Their workers stop them and
    report `shutdown`."""

    task_ids: list[str]
    desired_state: taskstate.DesiredState
    message: str
    at: float


class RemoveTasks(_Command, frozen=True, tag="task.remove"):
    """Forget finished tasks (history beyond OrchestratorSettings.task_history_per_slot)."""

    task_ids: list[str]


class CreateSecret(_Command, frozen=True, tag="secret.create"):
    """A secret: its value sealed by the proposer with the cluster data key for aad
    `secret:<secret_id>` (base64). Only ciphertext ever enters the log."""

    secret_id: str
    name: str
    data_sealed: str
    at: float

    def __repr__(self) -> str:  # the sealed value stays out of logs and tracebacks
        return f"CreateSecret(secret_id={self.secret_id!r}, name={self.name!r}, at={self.at!r})"


class RemoveSecret(_Command, frozen=True, tag="secret.remove"):
    """Refused (conflict) while any service's spec names the secret."""

    name: str
    at: float


class CreateConfig(_Command, frozen=True, tag="config.create"):
    """A config: a file's bytes in base64 (stored as they are), with their size and SHA-256 (hex),
    computed by the proposer. Refused (conflict) if the name is taken: a config never changes."""

    config_id: str
    name: str
    data: str
    size: Int64
    digest: str
    at: float

    def __repr__(self) -> str:  # up to 500 KiB of content stays out of logs and tracebacks
        return f"CreateConfig(config_id={self.config_id!r}, name={self.name!r}, size={self.size!r})"


class RemoveConfig(_Command, frozen=True, tag="config.remove"):
    """Refused (conflict) while any service's spec names the config."""

    name: str
    at: float


class VolumeRecord(_Record, frozen=True):
    """A named volume as a worker reports it: its name and the runtime (driver) that keeps it."""

    name: VolumeName
    driver: Literal["docker", "process"]


class NodeVolumes(_Command, frozen=True, tag="node.volumes"):
    """Node `node`'s worker reported this list of its volumes (its whole inventory): it replaces the
    stored one. Proposed by the leader only when the list differs from the stored one."""

    node: str
    volumes: Annotated[list[VolumeRecord], msgspec.Meta(max_length=MAX_NODE_VOLUMES)]
    at: float


class RemoveVolume(_Command, frozen=True, tag="volume.remove"):
    """Ask node `node`'s worker to remove its volume `name` (of any driver). Refused while a service's
    spec mounts a volume of that name; the request ends when the node's list no longer has it."""

    node: str
    name: str
    at: float


class ImportRows(_Command, frozen=True, tag="import.rows"):
    """Rows of one table from a backup, inserted as they are (`cluster init --restore`)."""

    table: str
    rows: list[dict[str, Any]] = msgspec.field(default_factory=list)


NoteValue = str | int | float | bool | None


class ClusterNote(_Command, frozen=True, tag="cluster.note"):
    """Something the leader saw that no other command records (a leader elected, a manager
    unreachable), written into the log so that every manager's event stream has it with the same id.
    Changes no state; its event is `type`, `action`, `actor`, `attributes` and `message` as given."""

    type: Literal["leader", "manager"]
    action: Annotated[str, msgspec.Meta(max_length=64)]
    actor: Annotated[str, msgspec.Meta(max_length=256)]
    attributes: Annotated[dict[str, NoteValue], msgspec.Meta(max_length=32)]
    message: Annotated[str, msgspec.Meta(max_length=1024)]
    at: float


class ResetManagers(_Command, frozen=True, tag="manager.reset"):
    """After a restore: the old managers are gone, `manager` is the only one."""

    manager: ManagerRecord
    at: float


Command = (
    InitCluster
    | CreateToken
    | RegisterManager
    | SetNodeState
    | RemoveNode
    | CreateService
    | UpdateService
    | RemoveService
    | ImportRows
    | ResetManagers
    | RegisterWorker
    | UpdateNode
    | SetNodeAvailability
    | RollbackService
    | SetUpdateStatus
    | CreateTasks
    | AssignTasks
    | SetTaskStatuses
    | SetTasksDesired
    | RemoveTasks
    | SetClusterCA
    | RecordCert
    | CreateSecret
    | RemoveSecret
    | CreateConfig
    | RemoveConfig
    | NodeVolumes
    | RemoveVolume
    | ClusterNote
)

# Every command class by its op, from the union above (one list to keep).
COMMANDS: dict[str, type[Command]] = {}
for _cls in typing.get_args(Command):
    _cls.OP = str(_cls.__struct_config__.tag)
    COMMANDS[_cls.OP] = _cls


def required_version(cmd: Command) -> int:
    """The command version a manager must apply to apply `cmd`."""
    version = SINCE.get(cmd.OP, BASE_COMMAND_VERSION)
    for name in _spec_fields_carried(cmd):
        version = max(version, SPEC_FIELDS_SINCE[name])
    if _publish_modes_carried(cmd) or _task_ports_carried(cmd):
        version = max(version, PUBLISH_MODE_SINCE)
    return version


def _task_ports_carried(cmd: Command) -> bool:
    """Whether `cmd` is a task status batch of which an update carries ports."""
    return isinstance(cmd, SetTaskStatuses) and any(
        not isinstance(u.ports, msgspec.UnsetType) for u in cmd.updates
    )


def _publish_modes_carried(cmd: Command) -> bool:
    """Whether `cmd` writes a published port with a mode into a spec."""
    if isinstance(cmd, CreateService):
        specs: list[TaskSpec] = [cmd.spec]
    elif isinstance(cmd, CreateTasks):
        specs = [t.spec for t in cmd.tasks]
    elif isinstance(cmd, UpdateService):
        items = cmd.changes.get("publish")
        return isinstance(items, list) and any(isinstance(p, dict) and "mode" in p for p in items)
    else:
        return False
    return any(not isinstance(p.mode, msgspec.UnsetType) for spec in specs for p in spec.publish)


def _spec_fields_carried(cmd: Command) -> set[str]:
    """The fields of SPEC_FIELDS_SINCE that `cmd` writes into a spec."""
    if isinstance(cmd, CreateService):
        specs: list[TaskSpec] = [cmd.spec]
    elif isinstance(cmd, CreateTasks):
        specs = [t.spec for t in cmd.tasks]
    elif isinstance(cmd, UpdateService):
        # Even a field set back to its default: the key alone is what an older decoder refuses.
        return {name for name in SPEC_FIELDS_SINCE if name in cmd.changes}
    else:
        return set()
    return {
        name
        for name in SPEC_FIELDS_SINCE
        if any(not isinstance(getattr(spec, name, msgspec.UNSET), msgspec.UnsetType) for spec in specs)
    }


def encode(cmd: Command) -> bytes:
    # msgspec gives the op (the tag) first, then the fields in order; orjson writes the floats, as ever.
    return orjson.dumps({"v": CODEC_VERSION, **msgspec.to_builtins(cmd)})


def decode(payload: bytes) -> Command:
    """The command in `payload`; CommandError("invalid", ...) if it is not a well-formed one."""
    try:
        doc = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise CommandError("invalid", f"command is not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise CommandError("invalid", "command is not a JSON object")
    version = doc.pop("v", None)
    if version != CODEC_VERSION:
        raise UnknownCommandError(f"unsupported command codec version {version!r}{_NEWER}")
    op = doc.get("op")
    cls = COMMANDS.get(op) if isinstance(op, str) else None
    if cls is None:
        raise UnknownCommandError(f"unknown command {op!r}{_NEWER}")
    try:
        cmd: Command = msgspec.convert(doc, cls)
    except msgspec.ValidationError as exc:
        raise CommandError("invalid", problem(cls.OP, str(exc))) from None
    return cmd


# What an unknown command most likely means in a healthy cluster (the leader proposes none that a
# manager of its cluster cannot apply, but a manager restarted with an older Warren may meet one).
_NEWER = (
    f" (written by a newer Warren? this manager applies command versions up to {COMMAND_VERSION}: "
    "upgrade it)"
)
