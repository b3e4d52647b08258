"""HTTP between managers (and from a joining manager to the cluster): readiness probes and join calls.

Forwarded writes go through warren.api.forwarder instead, which is on the hot path.

One pooled async client per manager, over mutual TLS with this manager's certificate once it has one
(`use_tls`); a joining manager's first call goes over a context that trusts the pinned CA only.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

import httpx

from warren.errors import (
    UnavailableError,
    WarrenError,
    error_class,
)


class PeerClient:
    def __init__(self, *, timeout_s: float, probe_timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self.probe_timeout_s = probe_timeout_s
        self._client = httpx.AsyncClient(timeout=timeout_s)

    async def use_tls(self, context: ssl.SSLContext) -> None:
        """From now on, call managers over TLS with `context` (its certificate may be reloaded in place)."""
        old, self._client = self._client, httpx.AsyncClient(timeout=self.timeout_s, verify=context)
        await old.aclose()

    async def probe_ready(self, api_addr: str) -> str:
        """'ready', 'not ready' (answers 503) or 'unreachable' (no answer within the probe timeout)."""
        try:
            resp = await self._client.get(f"https://{api_addr}/v1/ready", timeout=self.probe_timeout_s)
        except httpx.HTTPError:
            return "unreachable"
        return "ready" if resp.status_code == 200 else "not ready"

    async def command_version(self, api_addr: str) -> int | None:
        """The highest command version the manager at `api_addr` applies, from its /v1/ready answer
        (ready or not; 1 if that answer does not say: a Warren from before versions were advertised); None
        if it gives no such answer within the probe timeout (warren.manager.versions)."""
        try:
            resp = await self._client.get(f"https://{api_addr}/v1/ready", timeout=self.probe_timeout_s)
            body = resp.json()
        except (httpx.HTTPError, ValueError):
            return None
        if not isinstance(body, dict) or "ready" not in body:
            return None  # an error answer (a manager stopping, a proxy): it did not say
        version = body.get("command_version", 1)
        if isinstance(version, int) and not isinstance(version, bool) and version >= 1:
            return version
        return None

    async def probe_many(self, addrs: list[str]) -> dict[str, str]:
        results = await asyncio.gather(*(self.probe_ready(a) for a in addrs))
        return dict(zip(addrs, results, strict=True))

    async def call(
        self,
        api_addr: str,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        timeout_s: float | None = None,
    ) -> tuple[dict[str, Any], httpx.Headers]:
        """JSON request to another manager; its error answer becomes the matching WarrenError."""
        try:
            resp = await self._client.request(
                method, f"https://{api_addr}{path}", json=body, timeout=timeout_s or self.timeout_s
            )
        except httpx.HTTPError as exc:
            raise UnavailableError(
                f"cannot reach manager at {api_addr}: {exc or type(exc).__name__}"
            ) from None
        try:
            doc = resp.json()
        except ValueError:
            doc = {}
        if resp.status_code >= 400:
            body = doc if isinstance(doc, dict) else {}
            message = body.get("message")
            raise error_class(body.get("error"), resp.status_code)(
                f"{api_addr}: {message or f'HTTP {resp.status_code}'}"
            )
        if not isinstance(doc, dict):
            raise WarrenError(f"{api_addr}: unexpected answer {doc!r}")
        return doc, resp.headers

    async def close(self) -> None:
        await self._client.aclose()
