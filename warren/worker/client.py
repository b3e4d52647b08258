"""The worker's HTTPS client of the managers (docs/worker-protocol.md): join, the long-polled session,
status reports, log chunks and certificate renewal.

Every call goes to the manager that answered last. A manager that refuses the connection, times out
or answers 503 (no leader, no quorum, shutting down; 502/504 from a proxy) is left at once for the
next one; only when all of them failed in a row does the call raise `UnavailableError`, and the
caller decides how long to wait before the next round (warren.worker.backoff). Any manager will do: a follower
forwards to the leader.

Every call is TLS and verifies the manager against the cluster CA (as the name `warren-manager`,
whatever address was dialled). Joining first fetches the CA certificate and checks it against the
digest in the token before anything is sent (warren.pki.join), then sends the token with a CSR for a
key made here; the certificate it gets back is presented on every later call, together with the
session secret. A renewed certificate (`use_material`) is used by the calls that start afterwards,
while calls under way (a held session) finish on the connections they have.

The join token, the session secret and the private key are credentials: the first two travel in
request bodies and the `Authorization` header only, the key never leaves the data dir, and no log
line or error message here contains any of them.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx
import orjson

from warren import __version__
from warren.config import DEFAULT_API_PORT, WorkerSettings
from warren.errors import InvalidError, UnauthorizedError, UnavailableError, WarrenError, error_class
from warren.formats import join_host_port, split_host_port
from warren.pki import offload
from warren.pki.join import pinned_ca
from warren.pki.material import NodeMaterial, client_context, save_node

log = logging.getLogger(__name__)

# Largest body of one log chunk (docs/worker-protocol.md); bytes.
LOG_CHUNK_BYTES = 64 * 1024
LOG_END_HEADER = "X-Warren-Log-End"

JSONObject = dict[str, Any]
# "Not now, try another": 503 from a manager (no leader, no quorum, shutting down); 502/504 from a
# load balancer or proxy in front of one.
_NOT_NOW = frozenset({502, 503, 504})

# (manager "host:port", join token) -> the manager's CA certificate (PEM) if the token pins it;
# blocking. UnauthorizedError if it does not, UnavailableError if the manager cannot be reached.
FetchCA = Callable[[str, str], bytes]


class NodeRemovedError(UnauthorizedError):
    """A manager refused this worker's session secret: its node was removed from the cluster."""


@dataclass(frozen=True, slots=True)
class JoinAnswer:
    name: str
    secret: str = field(repr=False)
    cluster_id: str
    heartbeat_period_s: float
    # The CA, certificate and key just saved in the data dir (the session already presents them).
    material: NodeMaterial = field(repr=False)
    cert_expires_at: float = 0.0


def base_url(manager: str) -> str:
    host, port = split_host_port(manager, field="manager", default_port=DEFAULT_API_PORT)
    return f"https://{join_host_port(host, port)}"


class WorkerClient:
    """Calls to the managers in `managers` ("host:port"), with failover; see the module docstring.

    No call can be made before the session has TLS material: `join` makes it, `use_material` loads
    the material of an earlier join (and of each renewal). `transport` replaces the network in tests
    (httpx.MockTransport), and `fetch_ca` the anonymous CA fetch a join starts with
    (warren.pki.join.pinned_ca). Connectivity is tracked for the worker's session: `last_ok`
    (monotonic time of the last answer), `round_failed` (every manager failed since then) and
    `successes` (a counter, for `wait_success`).
    """

    def __init__(
        self,
        managers: Sequence[str],
        settings: WorkerSettings,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.monotonic,
        fetch_ca: FetchCA = pinned_ca,
    ) -> None:
        if not managers:
            raise InvalidError("a worker needs at least one manager address")
        self.managers = list(managers)
        self._bases = [base_url(m) for m in self.managers]
        self._current = 0
        self.settings = settings
        self._clock = clock
        self._transport = transport
        self._fetch_ca = fetch_ca
        self.node: str | None = None
        self._secret: str | None = None
        # The TLS context of the calls starting now, and its client; a client replaced by a renewal
        # is closed once the calls still using it are done.
        self.tls: ssl.SSLContext | None = None
        self._http: httpx.AsyncClient | None = None
        self._users: dict[httpx.AsyncClient, int] = {}
        self._retired: list[httpx.AsyncClient] = []
        self.last_ok = clock()
        self.round_failed = False
        self.successes = 0
        self._answered = asyncio.Condition()

    @property
    def current(self) -> str:
        """The manager the next call goes to (the one that answered last)."""
        return self.managers[self._current]

    def authenticate(self, node: str, secret: str) -> None:
        self.node = node
        self._secret = secret

    def use_material(self, material: NodeMaterial) -> None:
        """Present `material`'s certificate (and trust its CA) on every call from now on. Calls under
        way keep their connections, so a renewal interrupts nothing. ConfigError if it cannot be
        loaded."""
        self._use(client_context(material.ca_pem, material.node_path))

    async def close(self) -> None:
        clients = [*self._retired, *([self._http] if self._http is not None else [])]
        self._retired.clear()
        self._http = None
        for client in clients:
            await client.aclose()

    # -- the protocol's calls ---------------------------------------------------------------------

    async def join(
        self, token: str, addr: str, labels: dict[str, str], resources: JSONObject, *, data_dir: str
    ) -> JoinAnswer:
        """Join with `token`: check the managers' CA against it (nothing is sent to a manager whose CA
        it does not pin), then POST /v1/workers/join with a CSR for a new key, save the CA,
        certificate and key in `data_dir`'s TLS material and present them from then on.
        UnauthorizedError if the token does not pin the CA or is refused, UnavailableError if no
        manager answered."""
        ca_pem = await self._pinned_ca(token)
        key = await offload.new_join_key()
        self._use(client_context(ca_pem, None))
        body = {"token": token, "csr": key.csr_pem, "addr": addr, "labels": labels, "resources": resources}
        try:
            doc = await self._call_json("/v1/workers/join", body, self.settings.request_timeout_s, auth=False)
        except UnauthorizedError as exc:
            raise UnauthorizedError(f"the cluster refused the join token: {exc}") from None
        try:
            name = str(doc["name"])
            secret = str(doc["secret"])
            cluster_id = str(doc["cluster_id"])
            heartbeat_period_s = float(doc.get("heartbeat_period_s") or 1.0)
            cert_pem = str(doc["certificate"]).encode("ascii")
        except (KeyError, TypeError, ValueError) as exc:
            raise WarrenError(f"manager {self.current} answered the join without {exc}") from None
        try:
            expires = await offload.check_issued(
                cert_pem, key.key_pem, ca_pem, name=name, role="worker", cluster_id=cluster_id
            )
        except WarrenError as exc:
            raise WarrenError(
                f"manager {self.current} answered the join with a bad certificate: {exc}"
            ) from None
        material = await asyncio.to_thread(save_node, data_dir, ca_pem, cert_pem, key.key_pem)
        self.use_material(material)
        return JoinAnswer(name, secret, cluster_id, heartbeat_period_s, material, expires)

    async def renew(self, csr_pem: str) -> JSONObject:
        """POST /v1/certs/renew with the current certificate: `{"certificate", "ca", "cert_expires_at"}`
        for `csr_pem`'s key (warren.pki.renewal.Renewer's request)."""
        return await self._call_json("/v1/certs/renew", {"csr": csr_pem}, self.settings.request_timeout_s)

    async def session(self, body: JSONObject, hold_s: float) -> JSONObject:
        """POST /v1/dispatcher/session: held by the leader up to `hold_s` (the heartbeat period)."""
        return await self._call_json(
            "/v1/dispatcher/session", {"node": self.node, **body}, hold_s + self.settings.session_timeout_s
        )

    async def status(self, updates: list[JSONObject]) -> None:
        """POST /v1/dispatcher/status; returns once a manager answered 200 (the updates committed)."""
        await self._call_json(
            "/v1/dispatcher/status", {"node": self.node, "updates": updates}, self.settings.request_timeout_s
        )

    async def log_chunk(self, request_id: str, data: bytes, *, end: bool) -> bool:
        """POST one chunk (at most LOG_CHUNK_BYTES) of a log request's output; False if nobody waits
        for it any more (404/410), so the worker stops reading."""
        headers = {"Content-Type": "application/octet-stream"}
        if end:
            headers[LOG_END_HEADER] = "1"
        response = await self._call(
            f"/v1/dispatcher/logs/{quote(request_id, safe='')}",
            data,
            headers,
            self.settings.request_timeout_s,
            accept=(404, 410),
        )
        return response.is_success

    async def wait_success(self, after: int, timeout_s: float) -> bool:
        """Wait until some call succeeded after the `after`-th success (True), or `timeout_s` passed."""
        async with self._answered:
            try:
                async with asyncio.timeout(timeout_s):
                    await self._answered.wait_for(lambda: self.successes > after)
            except TimeoutError:
                return False
        return True

    # -- plumbing ---------------------------------------------------------------------------------

    async def _pinned_ca(self, token: str) -> bytes:
        """The CA certificate of the first manager that can be reached, checked against the token."""
        start = self._current
        reasons: list[str] = []
        for i in range(len(self.managers)):
            index = (start + i) % len(self.managers)
            try:
                # Blocking (its own connection, verifying nothing but the digest): off the loop.
                ca_pem = await asyncio.to_thread(self._fetch_ca, self.managers[index], token)
            except UnavailableError as exc:
                reasons.append(str(exc))
                log.debug("join: %s", exc)
                continue
            self._current = index
            return ca_pem
        self.round_failed = True
        raise UnavailableError(f"no manager answered ({'; '.join(reasons)})")

    def _use(self, ctx: ssl.SSLContext) -> None:
        old = self._http
        self.tls = ctx
        self._http = httpx.AsyncClient(
            transport=self._transport,
            verify=ctx,
            timeout=self.settings.request_timeout_s,
            headers={"User-Agent": f"warren-worker/{__version__}", "Accept": "application/json"},
        )
        if old is not None:
            self._retired.append(old)

    async def _post(
        self, url: str, content: bytes, headers: dict[str, str], timeout_s: float
    ) -> httpx.Response:
        client = self._http
        if client is None:
            raise UnauthorizedError("this worker has no certificate yet: it must join a cluster first")
        self._users[client] = self._users.get(client, 0) + 1
        try:
            response = await client.post(url, content=content, headers=headers, timeout=timeout_s)
        finally:
            self._users[client] -= 1
            if not self._users[client]:
                del self._users[client]
        if self._retired:
            await self._close_idle()
        return response

    async def _close_idle(self) -> None:
        """Close the clients replaced by a renewal that no call uses any more."""
        idle = [c for c in self._retired if c not in self._users]
        self._retired = [c for c in self._retired if c in self._users]
        for client in idle:
            await client.aclose()

    async def _call_json(
        self, path: str, body: JSONObject, timeout_s: float, *, auth: bool = True
    ) -> JSONObject:
        response = await self._call(
            path, orjson.dumps(body), {"Content-Type": "application/json"}, timeout_s, auth=auth
        )
        try:
            doc = orjson.loads(response.content) if response.content else {}
        except orjson.JSONDecodeError:
            doc = None
        if not isinstance(doc, dict):
            raise WarrenError(f"manager {self.current} answered {path} with something other than JSON")
        return doc

    async def _call(
        self,
        path: str,
        content: bytes,
        headers: dict[str, str],
        timeout_s: float,
        *,
        auth: bool = True,
        accept: tuple[int, ...] = (),
    ) -> httpx.Response:
        """The first answer other than 503 from the managers in turn; an error answer raises (unless
        its status is in `accept`), and so does a round in which every manager failed."""
        if auth:
            if self._secret is None:
                raise UnauthorizedError("this worker has not joined a cluster yet")
            headers = {**headers, "Authorization": f"Bearer {self._secret}"}
        start = self._current
        reasons: list[str] = []
        for i in range(len(self._bases)):
            index = (start + i) % len(self._bases)
            manager = self.managers[index]
            try:
                response = await self._post(self._bases[index] + path, content, headers, timeout_s)
            except httpx.HTTPError as exc:  # refused, reset, timed out, a garbled answer
                reasons.append(f"{manager}: {_describe(exc)}")
                log.debug("manager %s failed %s: %s", manager, path, _describe(exc))
                continue
            if response.status_code in _NOT_NOW:
                reasons.append(f"{manager}: {_error_message(response)}")
                log.debug("manager %s cannot serve %s now: %s", manager, path, _error_message(response))
                continue
            self._current = index
            await self._succeeded()
            if response.is_success or response.status_code in accept:
                return response
            raise self._error(response, auth=auth)
        self.round_failed = True
        raise UnavailableError(f"no manager answered ({'; '.join(reasons)})")

    async def _succeeded(self) -> None:
        # A manager answered (even with an error): it is reachable, the cluster is not lost.
        self.last_ok = self._clock()
        self.round_failed = False
        async with self._answered:
            self.successes += 1
            self._answered.notify_all()

    def _error(self, response: httpx.Response, *, auth: bool) -> WarrenError:
        message = _error_message(response)
        code = None
        try:
            doc = orjson.loads(response.content)
            if isinstance(doc, dict):
                code = doc.get("error")
        except orjson.JSONDecodeError:
            pass
        if response.status_code == 401 and auth:
            return NodeRemovedError(message)
        return error_class(code, response.status_code)(message)


def _error_message(response: httpx.Response) -> str:
    try:
        doc = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        doc = None
    if isinstance(doc, dict) and isinstance(doc.get("message"), str):
        return str(doc["message"])
    text = response.text.strip().splitlines()[0][:200] if response.text.strip() else ""
    return f"HTTP {response.status_code}" + (f": {text}" if text else "")


def _describe(exc: httpx.HTTPError) -> str:
    tls = _tls_failure(exc)
    if tls is not None:
        return f"TLS handshake failed ({tls})"
    if isinstance(exc, httpx.ConnectError):
        return "connection refused or unreachable"
    if isinstance(exc, httpx.TimeoutException):
        return "timed out"
    return str(exc) or type(exc).__name__


def _tls_failure(exc: BaseException) -> str | None:
    """The reason of a failed TLS handshake behind `exc` (a manager of another cluster, an expired or
    revoked certificate, a plain-HTTP server), or None if it was something else."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, ssl.SSLError):
            return getattr(cause, "verify_message", None) or str(cause)
        cause = cause.__cause__ or cause.__context__
    text = str(exc)
    return text if text.startswith("[SSL") else None
