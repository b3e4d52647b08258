"""FakeManager: the managers' side of docs/worker-protocol.md in memory, behind httpx.MockTransport.

One FakeManager plays the cluster (its leader); `transport({"127.0.0.1:1": m1, ...})` routes each
request by its host:port, so a worker may be given several managers, some of them refusing
connections (`refuse = True`) or answering 503 (`unavailable = True`).

Tests set the node's assignments with `assign(task_doc(...))`, and read what the worker reported
in `updates` (every status update received, in order) and `state(task_id)` (the latest).

The fake cluster has a real CA (`CA_PEM`): a join answers with a real certificate for the worker's
CSR, and so does POST /v1/certs/renew (`renewals`). `CAFetcher(managers)` stands in for the anonymous
CA fetch a join starts with (warren.pki.join.pinned_ca), checking the digest in the token as it does.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote

import httpx
import orjson

from warren.errors import UnauthorizedError, UnavailableError
from warren.pki import certs, material, tokens
from warren.pki.join import new_join_key

SECRET = "s" * 43
NODE = "worker-3f9a1c"
CLUSTER = "cluster-abc123"
CA_KEY, CA_CERT = certs.create_ca(CLUSTER, 24 * 3600.0)
CA_PEM = certs.cert_pem(CA_CERT)
TOKEN = tokens.mint(certs.ca_digest(CA_PEM))


def issue(
    csr_pem: str, *, name: str = NODE, role: certs.Role = "worker", lifetime_s: float = 3600.0
) -> bytes:
    """A certificate of the fake cluster's CA for the key of `csr_pem` (PEM)."""
    cert = certs.issue(
        CA_KEY,
        CA_CERT,
        certs.csr_public_key(csr_pem),
        name=name,
        role=role,
        cluster_id=CLUSTER,
        lifetime_s=lifetime_s,
    )
    return certs.cert_pem(cert)


def _issued_doc(cert_pem: bytes) -> dict[str, Any]:
    return {
        "certificate": cert_pem.decode("ascii"),
        "ca": CA_PEM.decode("ascii"),
        "cert_expires_at": certs.expires_at(certs.load_cert(cert_pem)),
    }


def task_doc(
    task_id: str,
    *,
    desired: str = "running",
    state: str = "assigned",
    image: str = "busybox",
    driver: str = "docker",
    command: list[str] | None = None,
    restart: Mapping[str, Any] | None = None,
    health: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    slot: int | None = 1,
    mounts: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "driver": driver,
        "image": image,
        "command": command,
        "env": dict(env or {}),
        "publish": [{"host": 8081, "container": 80, "protocol": "tcp"}],
        "resources": {"cpus": 0.5, "memory": 64 * 1024 * 1024},
        "constraints": [],
        "restart": dict(restart or {"condition": "any", "delay_s": 0.0, "max_attempts": 0}),
        "health": dict(health) if health else None,
        "stop_timeout_s": 3.0,
    }
    if mounts:
        spec["mounts"] = mounts
    return {
        "task_id": task_id,
        "service_id": "svc-1",
        "service_name": "web",
        "slot": slot,
        "desired_state": desired,
        "state": state,
        "spec": spec,
        "spec_digest": hashlib.sha256(orjson.dumps(spec, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16],
    }


class FakeManager:
    def __init__(self, *, heartbeat_period_s: float = 0.05) -> None:
        self.heartbeat_period_s = heartbeat_period_s
        self.tasks: dict[str, dict[str, Any]] = {}
        self.updates: list[dict[str, Any]] = []
        self.joins: list[dict[str, Any]] = []
        self.sessions: list[dict[str, Any]] = []
        self.status_posts: list[list[dict[str, Any]]] = []
        self.log_requests: list[dict[str, Any]] = []
        self.log_chunks: dict[str, list[tuple[bytes, bool]]] = {}
        self.refuse = False  # connections refused
        self.unavailable = False  # 503 (no leader)
        self.removed = False  # the node was removed: 401 for its secret
        self.refuse_word: str | None = None  # a status POST with an update whose message has it: 400
        self.token = TOKEN
        self.ca_pem = CA_PEM  # what GET /v1/ca answers (another cluster's CA in wrong-CA tests)
        self.cert_lifetime_s = 3600.0  # of the certificates it issues
        self.renewals: list[bytes] = []  # the certificates POST /v1/certs/renew answered with
        self.headers_seen: list[Mapping[str, str]] = []
        # Volumes the next session answer asks the worker to remove ("remove_volumes"), then forgotten.
        self.remove_volumes: list[str] = []
        # The `volumes_digest` of the answers (None: not sent, as an earlier manager does).
        self.volumes_digest: str | None = None
        # The cluster's service endpoints ({"digest", "services"}; None: none), sent when the worker's
        # `known_endpoints` differs from their digest, as the leader does.
        self.endpoints: dict[str, Any] | None = None
        # The session body keys it takes (None: any): an earlier manager refuses the others with 400
        # (and, without known_endpoints among them, answers no `endpoints` key, as one before them).
        self.session_keys: frozenset[str] | None = None
        self._changed = asyncio.Event()

    # -- test controls ----------------------------------------------------------------------------

    def go_away(self) -> None:
        """Refuse connections from now on (a held session call breaks off)."""
        self.refuse = True
        self._wake()

    def come_back(self) -> None:
        self.refuse = False
        self._wake()

    def assign(self, *docs: dict[str, Any]) -> None:
        for doc in docs:
            self.tasks[doc["task_id"]] = doc
        self._wake()

    def unassign(self, task_id: str) -> None:
        self.tasks.pop(task_id, None)
        self._wake()

    def set_desired(self, task_id: str, desired: str) -> None:
        self.tasks[task_id] = {**self.tasks[task_id], "desired_state": desired}
        self._wake()

    def set_endpoints(self, services: dict[str, Any], ingress: dict[str, Any] | None = None) -> None:
        """The endpoints the next answers carry, `services` (and `ingress`, if given) as on the wire (the
        digest is made here)."""
        doc: dict[str, Any] = {"services": services}
        if ingress is not None:
            doc["ingress"] = ingress
        digest = hashlib.sha256(orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]
        self.endpoints = {"digest": digest, **doc}
        self._wake()

    def _endpoints_news(self, body: Mapping[str, Any]) -> dict[str, Any] | None:
        if self.endpoints is None or "known_endpoints" not in body:
            return None
        return None if body["known_endpoints"] == self.endpoints["digest"] else self.endpoints

    def request_logs(
        self, request_id: str, task_id: str, container_id: str, *, tail: int | None = None
    ) -> None:
        self.log_requests.append(
            {
                "id": request_id,
                "task_id": task_id,
                "container_id": container_id,
                "follow": False,
                "tail": tail,
            }
        )
        self._wake()

    def state(self, task_id: str) -> str | None:
        states = [u["state"] for u in self.updates if u["task_id"] == task_id]
        return states[-1] if states else None

    def update(self, task_id: str) -> dict[str, Any] | None:
        mine = [u for u in self.updates if u["task_id"] == task_id]
        return mine[-1] if mine else None

    def states(self, task_id: str) -> list[str]:
        return [u["state"] for u in self.updates if u["task_id"] == task_id]

    def digest(self) -> str:
        items = sorted((t["task_id"], t["desired_state"], t["spec_digest"]) for t in self.tasks.values())
        return hashlib.sha256(orjson.dumps(items)).hexdigest()[:16]

    def _wake(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    # -- the protocol -----------------------------------------------------------------------------

    async def handle(self, request: httpx.Request) -> httpx.Response:
        if self.refuse:
            raise httpx.ConnectError("connection refused", request=request)
        if self.unavailable:
            return _json(503, {"error": "unavailable", "message": "no leader"})
        self.headers_seen.append(dict(request.headers))
        path = request.url.path
        if path == "/v1/workers/join":
            body = orjson.loads(request.content)
            self.joins.append(body)
            if body["token"] != self.token:
                return _json(401, {"error": "unauthorized", "message": "invalid join token"})
            return _json(
                201,
                {
                    "name": NODE,
                    "secret": SECRET,
                    "cluster_id": CLUSTER,
                    "heartbeat_period_s": self.heartbeat_period_s,
                    **_issued_doc(issue(body["csr"], lifetime_s=self.cert_lifetime_s)),
                },
            )
        if request.headers.get("authorization") != f"Bearer {SECRET}" or self.removed:
            return _json(
                401, {"error": "unauthorized", "message": "invalid or unknown worker session secret"}
            )
        if path == "/v1/certs/renew":
            cert_pem = issue(orjson.loads(request.content)["csr"], lifetime_s=self.cert_lifetime_s)
            self.renewals.append(cert_pem)
            self._wake()
            return _json(200, _issued_doc(cert_pem))
        if path == "/v1/dispatcher/session":
            return await self._session(orjson.loads(request.content))
        if path == "/v1/dispatcher/status":
            body = orjson.loads(request.content)
            assert body["node"] == NODE
            word = self.refuse_word
            if word is not None and any(word in u["message"] for u in body["updates"]):
                return _json(400, {"error": "invalid", "message": "updates.0.message: bad"})
            self.status_posts.append(body["updates"])
            self.updates.extend(body["updates"])
            return _json(200, {"accepted": len(body["updates"])})
        if path.startswith("/v1/dispatcher/logs/"):
            request_id = unquote(path.rsplit("/", 1)[1])
            end = request.headers.get("x-warren-log-end") == "1"
            self.log_chunks.setdefault(request_id, []).append((request.content, end))
            return _json(200, {"accepted": len(request.content)})
        return _json(404, {"error": "not_found", "message": f"no route {path}"})

    async def _session(self, body: dict[str, Any]) -> httpx.Response:
        assert body["node"] == NODE
        self.sessions.append(body)
        if self.session_keys is not None and not set(body) <= self.session_keys:
            extra = sorted(set(body) - self.session_keys)[0]
            return _json(400, {"error": "invalid", "message": f"{extra}: Extra inputs are not permitted"})
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.heartbeat_period_s
        while (self.digest() == body.get("known") and self._endpoints_news(body) is None
               and not self.log_requests and loop.time() < deadline):
            changed = self._changed
            try:
                async with asyncio.timeout_at(deadline):
                    await changed.wait()
            except TimeoutError:
                break
            if self.refuse or self.unavailable:  # went away while holding the call
                raise httpx.ReadError("connection reset")
        digest = self.digest()
        requests, self.log_requests = self.log_requests, []
        answer = {
            "heartbeat_period_s": self.heartbeat_period_s,
            "digest": digest,
            "assignments": None if digest == body.get("known") else list(self.tasks.values()),
            "log_requests": requests,
        }
        if self.session_keys is None or "known_endpoints" in self.session_keys:  # one that knows them
            answer["endpoints"] = self._endpoints_news(body)
        if self.remove_volumes:
            answer["remove_volumes"], self.remove_volumes = self.remove_volumes, []
        if self.volumes_digest is not None:
            answer["volumes_digest"] = self.volumes_digest
        return _json(200, answer)


def _json(status: int, doc: Any) -> httpx.Response:
    return httpx.Response(status, content=orjson.dumps(doc), headers={"Content-Type": "application/json"})


def transport(managers: Mapping[str, FakeManager]) -> httpx.MockTransport:
    """Route requests to the FakeManager at their host:port; an address not in `managers` refuses."""

    async def handler(request: httpx.Request) -> httpx.Response:
        manager = managers.get(f"{request.url.host}:{request.url.port}")
        if manager is None:
            raise httpx.ConnectError("connection refused", request=request)
        return await manager.handle(request)

    return httpx.MockTransport(handler)


class CAFetcher:
    """WorkerClient's `fetch_ca` for these fake managers: like warren.pki.join.pinned_ca, the CA of
    the manager at the address if the token pins it (UnauthorizedError if not, UnavailableError if
    the address is not in `managers` or refuses). `fetched` lists the managers asked, in order."""

    def __init__(self, managers: Mapping[str, FakeManager]) -> None:
        self.managers = managers
        self.fetched: list[str] = []

    def __call__(self, manager: str, token: str) -> bytes:
        self.fetched.append(manager)
        expected = tokens.ca_digest(token)
        if expected is None:
            raise UnauthorizedError("invalid join token (expected SWMTKN-1-<CA digest>-<secret>)")
        m = self.managers.get(manager)
        if m is None or m.refuse:
            raise UnavailableError(f"cannot reach manager at {manager}: [Errno 111] Connection refused")
        if not hmac.compare_digest(certs.ca_digest(m.ca_pem), expected):
            raise UnauthorizedError(
                f"the manager at {manager} presents a CA that does not match the join token's digest: "
                "refusing to join (a token of another cluster, or someone in between); nothing was sent"
            )
        return m.ca_pem


def node_material(data_dir: str, *, name: str = NODE, lifetime_s: float = 3600.0) -> material.NodeMaterial:
    """TLS material of a worker that joined the fake cluster, saved in `data_dir`."""
    key = new_join_key()
    return material.save_node(
        data_dir, CA_PEM, issue(key.csr_pem, name=name, lifetime_s=lifetime_s), key.key_pem
    )


def other_ca_pem() -> bytes:
    """The CA certificate of another cluster."""
    return certs.cert_pem(certs.create_ca("cluster-other", 3600.0)[1])
