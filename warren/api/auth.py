"""Who may call what: the API's authorization, in front of everything else (docs/security.md).

Every TCP connection to the API is TLS. The caller is known by the client certificate it presented
(verified against the cluster CA by the TLS layer; `servers.PeerProtocol` puts its identity in the
request scope), or is the local administrator when the request came in on the manager's unix socket
(0600, in the data dir). Then:

- without a certificate, only the join calls (and the CA certificate they check first) are open;
- a worker certificate reaches only the worker session endpoints and its own certificate renewal;
- manager and admin certificates reach everything;
- a certificate of a node that was removed is refused (revoked), whatever it is still valid for.

A follower forwards some requests to the leader with its own (manager) certificate; it marks them
(`x-warren-forwarded-to`) and states the original caller in `x-warren-identity`, which the leader
believes only from a manager. Over a manager's connection, a request acts with the identity stated for
it; a forwarded request that states none, or states one that does not parse, is refused (deny by
default: a forwarded request never acts as the manager that carried it). Only a manager's own calls
(readiness probes, certificate renewal, joins: never forwarded, never marked) act as that manager.
The identity header is dropped from everyone else's requests and replaced by the authorized caller.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from warren.api.forwarder import FORWARDED_HEADER
from warren.api.responses import error_response
from warren.errors import UnavailableError
from warren.pki.peek import ROLES, PeerIdentity

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
# The role the cluster's state records for a node name; None if there is no such node (removed);
# raises UnavailableError while this manager's state is too far behind to tell.
RoleOf = Callable[[str], str | None]
# Waits until this manager has applied everything committed (a read barrier); UnavailableError if it
# cannot (no leader, no quorum).
CatchUp = Callable[[], Awaitable[None]]

IDENTITY_HEADER = b"x-warren-identity"
PEER_KEY = "warren.peer"  # scope["extensions"][PEER_KEY]: PeerIdentity | None, set per connection
LOCAL_KEY = "warren.local"  # scope["extensions"][LOCAL_KEY]: True on the unix socket
IDENTITY_KEY = "warren.identity"  # scope[IDENTITY_KEY]: the authorized caller, for the routes

# The local administrator on the manager's unix socket.
LOCAL_ADMIN = PeerIdentity("local", "admin", "", "")

OPEN_PATHS = frozenset({("GET", "/v1/ca"), ("POST", "/v1/managers/join"), ("POST", "/v1/workers/join")})
WORKER_PREFIXES = ("/v1/dispatcher/",)
WORKER_PATHS = frozenset({("POST", "/v1/certs/renew")})


def caller(scope: Scope) -> PeerIdentity | None:
    """The authorized caller of a request (None for an anonymous join call)."""
    identity = scope.get(IDENTITY_KEY)
    return identity if isinstance(identity, PeerIdentity) else None


# A stated identity: "anonymous", or "<role> <name>" with a node or admin name of visible ASCII.
_STATED = re.compile(rb"anonymous|(?P<role>[a-z]+) (?P<name>[\x21-\x7e]{1,253})")


class _Refused(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.answer = (status, code, message)


def _stated(headers: list[tuple[bytes, bytes]]) -> PeerIdentity | None | bool:
    """The identity a manager stated for a request it carries: PeerIdentity, None (anonymous), or False
    when it states none and the request is not marked forwarded (the manager's own call). _Refused for a
    forwarded request with no stated identity, or a stated identity that is not exactly one valid one."""
    stated = [value for key, value in headers if key == IDENTITY_HEADER]
    forwarded = any(key == FORWARDED_HEADER for key, _ in headers)
    if not stated:
        if forwarded:
            raise _Refused(
                403,
                "forbidden",
                "a forwarded request must state the identity of its caller (x-warren-identity)",
            )
        return False
    match = _STATED.fullmatch(stated[0]) if len(stated) == 1 else None
    role = match["role"].decode("ascii") if match is not None and match["role"] is not None else None
    if match is None or (role is not None and role not in ROLES):
        raise _Refused(400, "invalid", 'invalid x-warren-identity: one "<role> <name>" or "anonymous"')
    if role is None:
        return None
    return PeerIdentity(match["name"].decode("ascii"), role, "", "")


class Authorization:
    def __init__(self, app: ASGIApp, role_of: RoleOf, catch_up: CatchUp | None = None) -> None:
        self.app = app
        self.role_of = role_of
        self.catch_up = catch_up

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extensions = scope.get("extensions") or {}
        headers: list[tuple[bytes, bytes]] = list(scope["headers"])
        peer: PeerIdentity | None
        if extensions.get(LOCAL_KEY):
            peer = LOCAL_ADMIN
        else:
            peer = extensions.get(PEER_KEY)
        refusal: tuple[int, str, str] | None = None
        if peer is not None and peer.role == "manager":
            try:
                stated = _stated(headers)
            except _Refused as exc:
                refusal = exc.answer
            else:
                if stated is not False:
                    peer = stated  # type: ignore[assignment]
        refusal = refusal or await self._refusal(scope["method"], scope["path"], peer)
        if refusal is not None:
            status, code, message = refusal
            await error_response(status, code, message)(scope, receive, send)
            return
        scope[IDENTITY_KEY] = peer
        stated_value = b"anonymous" if peer is None else f"{peer.role} {peer.name}".encode()
        scope["headers"] = [(k, v) for k, v in headers if k != IDENTITY_HEADER] + [
            (IDENTITY_HEADER, stated_value)
        ]
        await self.app(scope, receive, send)

    async def _refusal(
        self, method: str, path: str, peer: PeerIdentity | None
    ) -> tuple[int, str, str] | None:
        if (method, path) in OPEN_PATHS:
            return None
        if peer is None:
            return (
                401,
                "unauthorized",
                "a client certificate issued by this cluster is required (the CLI finds the one "
                "`warren cluster init` wrote under ~/.config/warren; on a manager host, root can use "
                "the unix socket in the data dir)",
            )
        if peer.role in ("manager", "worker"):
            try:
                role = self.role_of(peer.name)
                if role is None and self.catch_up is not None:
                    # Not in this manager's state: removed, or not applied here yet (a manager restarted
                    # with the others may serve while its state is behind). Ask again once caught up.
                    await self.catch_up()
                    role = self.role_of(peer.name)
            except UnavailableError as exc:  # a manager that cannot catch up cannot tell a removed node
                return (503, "unavailable", str(exc))
            if role != peer.role:
                return (
                    401,
                    "unauthorized",
                    f"the certificate of node {peer.name} is revoked (the node was removed)",
                )
        if peer.role == "worker" and not (path.startswith(WORKER_PREFIXES) or (method, path) in WORKER_PATHS):
            return (403, "forbidden", "a worker certificate may only use the worker session endpoints")
        return None
