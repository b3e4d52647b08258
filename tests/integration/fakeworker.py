"""Workers made of HTTP calls, for tests of the managers' side of docs/worker-protocol.md without a
worker agent: a `FakeWorker` joins, long-polls its session, reports task status and answers log
requests; `tls_worker` joins with its own key and holds a TLS context with its certificate. They offer
the `process` driver, so the planner places tasks on them when the managers run with --manager-only."""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

from tests.integration.managers import ManagerProc, api, cli
from warren.pki import material
from warren.pki.join import new_join_key

HEARTBEAT_S = 1.0  # OrchestratorSettings.heartbeat_period_s (default)
RESOURCES = {"cpus": 4.0, "memory": 8 * 1024**3, "drivers": ["process"], "hostname": "fake"}
SLEEPER = {"image": "local", "driver": "process", "command": ["sleep", "100000"]}


class FakeWorker:
    """A worker made of HTTP calls. `keep_alive()` runs its session loop in a thread, trying the
    managers in turn like a real worker, until `stop()`."""

    def __init__(self, managers: Sequence[str], name: str, secret: str) -> None:
        self.managers = list(managers)
        self.name = name
        self.secret = secret
        self.digest: str | None = None
        self.assignments: list[dict[str, Any]] = []
        self.log_requests: list[dict[str, Any]] = []
        self.answers = 0
        self.failures = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    @classmethod
    def join(cls, managers: Sequence[str], token: str, addr: str = "127.0.0.9") -> FakeWorker:
        csr = new_join_key().csr_pem
        body = {"token": token, "addr": addr, "labels": {}, "resources": RESOURCES, "csr": csr}
        with api(managers[0], 10) as client:
            r = client.post("/v1/workers/join", json=body)
        assert r.status_code == 201, r.text
        doc = r.json()
        return cls(managers, doc["name"], doc["secret"])

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.secret}"}

    def session(self, addr: str | None = None, timeout: float = 10) -> dict[str, Any]:
        with api(addr or self.managers[0], timeout) as client:
            r = client.post(
                "/v1/dispatcher/session", json={"node": self.name, "known": self.digest}, headers=self.headers
            )
        assert r.status_code == 200, r.text
        self._take(r.json())
        return dict(r.json())

    def _take(self, doc: dict[str, Any]) -> None:
        with self._lock:
            self.answers += 1
            self.digest = doc["digest"]
            if doc["assignments"] is not None:
                self.assignments = doc["assignments"]
            self.log_requests += doc["log_requests"]

    def status(self, task_id: str, state: str, addr: str | None = None, **extra: Any) -> httpx.Response:
        update = {"task_id": task_id, "state": state, "message": state, "at": time.time(), **extra}
        with api(addr or self.managers[0], 10) as client:
            return client.post(
                "/v1/dispatcher/status", json={"node": self.name, "updates": [update]}, headers=self.headers
            )

    def task_ids(self) -> set[str]:
        with self._lock:
            return {a["task_id"] for a in self.assignments if a["desired_state"] == "running"}

    # -- the background session loop --------------------------------------------------------------

    def keep_alive(self) -> FakeWorker:
        self._thread = threading.Thread(target=self._loop, name=f"fake {self.name}", daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        i = 0
        while not self._stop.is_set():
            addr = self.managers[i % len(self.managers)]
            try:
                with api(addr, HEARTBEAT_S + 5) as client:
                    r = client.post(
                        "/v1/dispatcher/session",
                        json={"node": self.name, "known": self.digest},
                        headers=self.headers,
                    )
                if r.status_code == 200:
                    self._take(r.json())
                    continue
            except httpx.HTTPError:
                pass
            self.failures += 1
            i += 1
            self._stop.wait(0.1)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=15)


def worker_token(addr: str, **extra: Any) -> str:
    with api(addr, 10) as client:
        r = client.post("/v1/cluster/join-tokens", json={"role": "worker", **extra})
    assert r.status_code == 201, r.text
    return str(r.json()["token"])


def create_sleepers(addr: str, name: str, **spec: Any) -> dict[str, Any]:
    with api(addr, 10) as client:
        r = client.post("/v1/services", json={"name": name, **SLEEPER, **spec})
    assert r.status_code == 201, r.text
    return dict(r.json())


def tls_worker(tmp_path: Path, m: ManagerProc) -> tuple[dict[str, Any], ssl.SSLContext]:
    """A worker joined through the API with its own key: its join answer and a TLS context with its
    certificate (the way the worker agent holds it)."""
    token = cli("cluster", "join-token", "worker", "-q", "--manager", m.api_addr).ok().stdout.strip()
    key = new_join_key()
    body = {"token": token, "addr": "127.0.0.9", "resources": RESOURCES, "csr": key.csr_pem}
    with api(m.api_addr) as client:
        response = client.post("/v1/workers/join", json=body)
    assert response.status_code == 201, response.text
    doc = response.json()
    node = material.save_node(
        str(tmp_path / doc["name"]), doc["ca"].encode(), doc["certificate"].encode(), key.key_pem
    )
    return doc, material.client_context(node.ca_pem, node.node_path)
