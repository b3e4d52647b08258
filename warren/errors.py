"""Warren's one exception tree, and the fold of `warren_raft`'s exceptions into it.

Callers catch Warren's classes only: code that talks to the Raft core wraps the call in
`raft_errors()` (or calls `from_raft`), so no `warren_raft` exception leaks past that edge.
"""

from __future__ import annotations

import functools
import inspect
import sys
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, cast

if TYPE_CHECKING:
    import warren_raft

P = ParamSpec("P")
R = TypeVar("R")


class WarrenError(Exception):
    """Root of every error Warren raises on purpose."""


class NotFoundError(WarrenError):
    """The named object (node, service, task, ...) does not exist."""


class ConflictError(WarrenError):
    """The request conflicts with the current state (version mismatch, change already in progress)."""


class ConfigError(WarrenError, ValueError):
    """A configuration value or combination is invalid; the message names the field and the rule.

    `fields` names the settings a broken rule ties together, so a front end (the CLI) can say which of
    its own flags to change. Also a ValueError, so argparse reports it as a usage error when raised by
    a `type=` converter.
    """

    def __init__(self, message: str, *, fields: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.fields = fields


class NotLeaderError(WarrenError):
    """This manager is not the Raft leader: retry on `leader_addr` (None while no leader is known)."""

    def __init__(
        self, message: str = "not the leader", *, leader_id: int | None = None, leader_addr: str | None = None
    ) -> None:
        super().__init__(message)
        self.leader_id = leader_id
        self.leader_addr = leader_addr


class StorageError(WarrenError):
    """Durable state could not be read or written (I/O error, disk full, ...)."""


class CorruptStateError(StorageError):
    """Durable state failed validation; the node refuses to start from it rather than guess."""


class UnavailableError(WarrenError):
    """The cluster cannot serve the request now (no quorum, timeout, shutting down); retry later."""


class UnreachableError(UnavailableError):
    """No manager was reached (connection refused, connect timeout): the request was never sent, so it
    changed nothing. Raised by the client only when no attempt of the request reached a manager."""


class NotConvergedError(WarrenError):
    """A change was made but did not converge: its rolling update paused or rolled back, its tasks keep
    failing, or no node can run them. The change itself stays (the CLI's wait says why it stopped)."""


class InvalidError(WarrenError):
    """The request is malformed or names something impossible (bad name, bad value, unknown field)."""


class UnauthorizedError(WarrenError):
    """A join token (or other credential) is missing, unknown, expired, rotated or for the wrong role."""


class ForbiddenError(WarrenError):
    """The caller is known, but its role may not do this (e.g. a worker certificate on an admin call)."""


# The API's answer for each Warren error: (class, HTTP status, error code), in the order they are
# matched (a subclass before its parent). The server answers with the first entry the error is an
# instance of; clients and the proposer turn an answer back into the class of the first entry with
# its code (or, for answers without a Warren error body, its status). docs/api.md lists them.
HTTP_ANSWERS: tuple[tuple[type[WarrenError], int, str], ...] = (
    (InvalidError, 400, "invalid"),
    (ConfigError, 400, "invalid"),
    (UnauthorizedError, 401, "unauthorized"),
    (ForbiddenError, 403, "forbidden"),
    (NotFoundError, 404, "not_found"),
    (ConflictError, 409, "conflict"),
    (InvalidError, 413, "too_large"),  # raised by the API's body limit, never by handlers
    (InvalidError, 422, "invalid"),  # what FastAPI-style servers answer for a bad body; Warren says 400
    (UnavailableError, 503, "unavailable"),
    (NotLeaderError, 503, "unavailable"),
    (StorageError, 500, "storage"),
)


def http_answer(exc: WarrenError) -> tuple[int, str]:
    """(HTTP status, error code) the API answers `exc` with; (500, "internal") for anything else."""
    for cls, status, code in HTTP_ANSWERS:
        if isinstance(exc, cls):
            return status, code
    return 500, "internal"


def error_class(code: object, status: int | None = None) -> type[WarrenError]:
    """The Warren error for an error answer: by its code, else by its HTTP status, else WarrenError."""
    for cls, _, known in HTTP_ANSWERS:
        if known == code:
            return cls
    for cls, known_status, _ in HTTP_ANSWERS:
        if known_status == status:
            return cls
    return WarrenError


def from_raft(exc: warren_raft.RaftError) -> WarrenError:
    """The Warren error for a `warren_raft` error: same message, leader hint kept.

    Returned, not raised: write `raise from_raft(exc) from exc`, or use `raft_errors()`.
    """
    import warren_raft as wr

    message = str(exc)
    if isinstance(exc, wr.NotLeaderError):
        # getattr: the core sets these when it raises; an instance built by hand may lack them.
        return NotLeaderError(
            message,
            leader_id=getattr(exc, "leader_id", None),
            leader_addr=getattr(exc, "leader_addr", None),
        )
    if isinstance(exc, wr.ConfigError):
        return ConfigError(message)
    if isinstance(exc, wr.CorruptLogError):  # before StorageError: it is a subclass
        return CorruptStateError(message)
    if isinstance(exc, wr.StorageError):
        return StorageError(message)
    if isinstance(exc, wr.MembershipError):
        # Refused because another change is in progress or the member is unknown: the request
        # conflicts with the current membership.
        return ConflictError(message)
    if isinstance(exc, wr.RaftTimeoutError | wr.ShutdownError):
        return UnavailableError(message)
    return WarrenError(message)


class raft_errors:  # lower-case like contextlib.suppress: used as `with raft_errors():`
    """Re-raise `warren_raft` errors as Warren errors (`raise ... from exc`); others pass through.

    A context manager (`with raft_errors(): await node.propose(b)`) and a decorator for plain and
    `async def` functions. Stateless, so one instance may be shared.
    """

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        # A warren_raft error can only exist if the module was imported, so no import here.
        raft = sys.modules.get("warren_raft")
        if raft is not None and isinstance(exc, raft.RaftError):
            raise from_raft(exc) from exc

    def __call__(self, func: Callable[P, R]) -> Callable[P, R]:
        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
                with self:
                    return await cast(Awaitable[Any], func(*args, **kwargs))

            return cast(Callable[P, R], async_wrapper)

        @functools.wraps(func)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            with self:
                return func(*args, **kwargs)

        return wrapper
