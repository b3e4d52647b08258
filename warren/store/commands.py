"""The commands replicated through Raft, and their versioned wire codec.

A command is small and field-level, and carries everything apply needs to be deterministic: IDs and
timestamps are minted by the proposer (`at` is the proposer's wall clock, seconds since the epoch).

Wire form: one JSON object `{"v": CODEC_VERSION, "op": "<op>", ...fields}` (orjson). `decode` refuses
an unknown version or op, a missing or unknown field, or a field of the wrong type with a
`CommandError`, which apply turns into an error response: a bad command never stops a manager.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import orjson

from warren.spec import taskstate

CODEC_VERSION = 1

# Command versions, for managers of mixed Warren versions during a rolling upgrade (enforced by
# warren.manager.versions): every command Warren had when versions began is of version 1; a command
# added later, or one given a field an older decoder refuses, is listed in SINCE with the version that
# brought it, and COMMAND_VERSION rises with it. Each manager advertises COMMAND_VERSION; the leader
# proposes a command only when every manager applies its version.
BASE_COMMAND_VERSION = 1
# The highest command version this Warren applies.
COMMAND_VERSION = 1
# op -> the command version that brought it, for ops newer than BASE_COMMAND_VERSION (none yet).
SINCE: dict[str, int] = {}

Role = Literal["manager", "worker"]
NodeState = Literal["ready", "down", "joining"]
Availability = Literal["active", "drain"]


class CommandError(Exception):
    """A command cannot be applied; `code` is the API error code (invalid, conflict, not_found, ...)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class UnknownCommandError(CommandError):
    """A command this Warren does not know (a newer Warren's?): refused like a malformed one, but its
    refusal means this manager's state may now differ from the others', so it is logged loudly."""

    def __init__(self, message: str) -> None:
        super().__init__("invalid", message)


@dataclass(frozen=True, slots=True)
class ManagerRecord:
    """A manager as recorded in the nodes table."""

    name: str
    raft_id: int
    api_addr: str
    raft_addr: str


@dataclass(frozen=True, slots=True)
class InitCluster:
    """First command of a new cluster: its ID and the founding manager."""

    OP: ClassVar[str] = "cluster.init"
    cluster_id: str
    at: float
    manager: ManagerRecord


@dataclass(frozen=True, slots=True)
class SetClusterCA:
    """The cluster CA, recorded once by the founder: its certificate (PEM) and its private key sealed
    with the cluster data key (base64), so any manager can sign after a failover."""

    OP: ClassVar[str] = "pki.ca"
    ca_cert: str
    ca_key_sealed: str
    at: float


@dataclass(frozen=True, slots=True)
class RecordCert:
    """A node certificate was issued (by its SHA-256): kept until it expires, so that removing the
    node revokes it."""

    OP: ClassVar[str] = "pki.cert"
    fingerprint: str
    node: str
    role: str
    expires_at: float
    at: float


@dataclass(frozen=True, slots=True)
class CreateToken:
    """A join token, as its SHA-256 only. With `rotate`, every earlier token of the role is revoked."""

    OP: ClassVar[str] = "token.create"
    token_id: str
    role: Role
    hash: str
    at: float
    expires_at: float
    rotate: bool


@dataclass(frozen=True, slots=True)
class RegisterManager:
    """A manager asks to join with a token (its hash): checked here, atomically with rotation."""

    OP: ClassVar[str] = "manager.register"
    name: str
    api_addr: str
    raft_addr: str
    token_hash: str
    at: float


@dataclass(frozen=True, slots=True)
class SetNodeState:
    """A node is up (`ready`) or written down (`down`, by the leader after its heartbeat grace)."""

    OP: ClassVar[str] = "node.state"
    name: str
    state: str
    at: float


@dataclass(frozen=True, slots=True)
class RegisterWorker:
    """A worker joins with a token (its hash, checked here). `secret_hash` is the SHA-256 of the
    session secret the worker was given; its later calls present the secret."""

    OP: ClassVar[str] = "worker.register"
    name: str
    token_hash: str
    secret_hash: str
    addr: str
    labels: dict[str, Any]
    resources: dict[str, Any]
    at: float


@dataclass(frozen=True, slots=True)
class UpdateNode:
    """A worker that resumed reports its address, labels and resources again."""

    OP: ClassVar[str] = "node.update"
    name: str
    addr: str
    labels: dict[str, Any]
    resources: dict[str, Any]
    at: float


@dataclass(frozen=True, slots=True)
class SetNodeAvailability:
    """`drain` moves a node's tasks away and places none there; `active` undoes it."""

    OP: ClassVar[str] = "node.availability"
    name: str
    availability: Availability
    at: float


@dataclass(frozen=True, slots=True)
class RemoveNode:
    OP: ClassVar[str] = "node.remove"
    name: str
    at: float


@dataclass(frozen=True, slots=True)
class CreateService:
    OP: ClassVar[str] = "service.create"
    service_id: str
    name: str
    spec: dict[str, Any]
    at: float


@dataclass(frozen=True, slots=True)
class UpdateService:
    """Field-level change of a service's spec: only the keys in `changes` are replaced."""

    OP: ClassVar[str] = "service.update"
    name: str
    changes: dict[str, Any]
    at: float
    if_version: int | None = None


@dataclass(frozen=True, slots=True)
class RemoveService:
    OP: ClassVar[str] = "service.remove"
    name: str
    at: float
    if_version: int | None = None


@dataclass(frozen=True, slots=True)
class RollbackService:
    """Back to the spec before the last update (the current one becomes the previous)."""

    OP: ClassVar[str] = "service.rollback"
    name: str
    at: float
    if_version: int | None = None
    # A user's rollback (`service rollback`): the same apply records update_status rollback_started,
    # so no reconcile pass can see the rolled-back spec with the update's old status and report on it
    # (it used to be a second command). The reconciler's own rollback leaves this False and sets its
    # status, with the failure's reason, in the same batch.
    requested: bool = False


@dataclass(frozen=True, slots=True)
class SetUpdateStatus:
    """Progress of a rolling update as the reconciler sees it: {"state": "updating" | "paused" |
    "completed" | "rollback_started" | "rollback_completed", "message": ..., "started_at": ...};
    None clears it."""

    OP: ClassVar[str] = "service.update_status"
    name: str
    status: dict[str, Any] | None
    at: float


@dataclass(frozen=True, slots=True)
class NewTask:
    """A task the reconciler creates: placed on `node` (state assigned) or not (state pending, with
    the reason in `message`). `spec` is the task-defining part of the service spec
    (taskstate.task_spec), `spec_digest` its digest. Global-mode tasks have no slot."""

    task_id: str
    service_id: str
    slot: int | None
    node: str | None
    state: Literal["assigned", "pending"]
    message: str
    spec: dict[str, Any]
    spec_digest: str


@dataclass(frozen=True, slots=True)
class CreateTasks:
    OP: ClassVar[str] = "task.create"
    tasks: list[NewTask]
    at: float


@dataclass(frozen=True, slots=True)
class Assignment:
    """A pending task placed on a node now (state pending -> assigned), or still pending with a new
    reason (`node` None)."""

    task_id: str
    node: str | None
    message: str


@dataclass(frozen=True, slots=True)
class AssignTasks:
    OP: ClassVar[str] = "task.assign"
    assignments: list[Assignment]
    at: float


@dataclass(frozen=True, slots=True)
class TaskStatus:
    """What a worker (or the reconciler, for a node that went down) says about a task. `node`, when
    given, must be the task's node: a worker only reports its own tasks. A move backwards
    (taskstate.can_move) is ignored, not refused, so one stale report does not fail a batch."""

    task_id: str
    state: str
    message: str
    at: float
    node: str | None = None
    container_id: str | None = None
    exit_code: int | None = None
    health: str | None = None


@dataclass(frozen=True, slots=True)
class SetTaskStatuses:
    OP: ClassVar[str] = "task.status"
    updates: list[TaskStatus]


@dataclass(frozen=True, slots=True)
class SetTasksDesired:
    """Ask tasks to stop (`shutdown`): scale down, rolling update, drain. Their workers stop them and
    report `shutdown`."""

    OP: ClassVar[str] = "task.desired"
    task_ids: list[str]
    desired_state: taskstate.DesiredState
    message: str
    at: float


@dataclass(frozen=True, slots=True)
class RemoveTasks:
    """Forget finished tasks (history beyond OrchestratorSettings.task_history_per_slot)."""

    OP: ClassVar[str] = "task.remove"
    task_ids: list[str]


@dataclass(frozen=True, slots=True)
class CreateSecret:
    """A secret: its value sealed by the proposer with the cluster data key for aad
    `secret:<secret_id>` (base64). Only ciphertext ever enters the log."""

    OP: ClassVar[str] = "secret.create"
    secret_id: str
    name: str
    data_sealed: str = field(repr=False)
    at: float


@dataclass(frozen=True, slots=True)
class RemoveSecret:
    """Refused (conflict) while any service's spec names the secret."""

    OP: ClassVar[str] = "secret.remove"
    name: str
    at: float


@dataclass(frozen=True, slots=True)
class ImportRows:
    """Rows of one table from a backup, inserted as they are (`cluster init --restore`)."""

    OP: ClassVar[str] = "import.rows"
    table: str
    rows: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class ResetManagers:
    """After a restore: the old managers are gone, `manager` is the only one."""

    OP: ClassVar[str] = "manager.reset"
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
)

# Every command class by its op, from the union above (one list to keep).
COMMANDS: dict[str, type[Command]] = {cls.OP: cls for cls in typing.get_args(Command)}


def required_version(cmd: Command) -> int:
    """The command version a manager must apply to apply `cmd`."""
    return SINCE.get(cmd.OP, BASE_COMMAND_VERSION)


def encode(cmd: Command) -> bytes:
    body = dataclasses.asdict(cmd)
    return orjson.dumps({"v": CODEC_VERSION, "op": cmd.OP, **body})


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
    op = doc.pop("op", None)
    cls = COMMANDS.get(op) if isinstance(op, str) else None
    if cls is None:
        raise UnknownCommandError(f"unknown command {op!r}{_NEWER}")
    cmd: Command = _build(cls, doc, op)
    return cmd


# What an unknown command most likely means in a healthy cluster (the leader proposes none that a
# manager of its cluster cannot apply, but a manager restarted with an older Warren may meet one).
_NEWER = (
    f" (written by a newer Warren? this manager applies command versions up to {COMMAND_VERSION}: "
    "upgrade it)"
)

_SHAPES: dict[type[Any], tuple[dict[str, Any], dict[str, dataclasses.Field[Any]]]] = {}


def _shape(cls: type[Any]) -> tuple[dict[str, Any], dict[str, dataclasses.Field[Any]]]:
    """(type hints, fields) of a command class; resolving hints is slow, so once per class."""
    shape = _SHAPES.get(cls)
    if shape is None:
        shape = _SHAPES[cls] = (typing.get_type_hints(cls), {f.name: f for f in dataclasses.fields(cls)})
    return shape


def _build(cls: type[Any], doc: dict[str, Any], where: str) -> Any:
    hints, fields = _shape(cls)
    unknown = set(doc) - set(fields)
    if unknown:
        raise CommandError("invalid", f"{where}: unknown fields {sorted(unknown)}")
    values: dict[str, Any] = {}
    for name, f in fields.items():
        if name not in doc:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise CommandError("invalid", f"{where}: missing field {name!r}")
            continue
        values[name] = _check(hints[name], doc[name], f"{where}.{name}")
    return cls(**values)


def _check(hint: Any, value: Any, where: str) -> Any:
    """`value` if it matches the type `hint` (the few shapes commands use), else CommandError."""
    origin = typing.get_origin(hint)
    if origin is Literal:
        if value in typing.get_args(hint):
            return value
    elif origin in (types.UnionType, typing.Union):
        for option in typing.get_args(hint):
            try:
                return _check(option, value, where)
            except CommandError:
                continue
    elif origin is dict:
        if isinstance(value, dict) and all(isinstance(k, str) for k in value):
            return value
    elif origin is list:
        (item,) = typing.get_args(hint)
        if isinstance(value, list):
            return [_check(item, v, where) for v in value]
    elif hint is type(None):
        if value is None:
            return None
    elif dataclasses.is_dataclass(hint):
        if isinstance(value, dict):
            return _build(hint, value, where)  # type: ignore[arg-type]
    elif hint is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif hint is int or hint is str or hint is bool:
        if isinstance(value, hint) and (hint is bool or not isinstance(value, bool)):
            return value
    raise CommandError("invalid", f"{where}: unexpected value {value!r}")
