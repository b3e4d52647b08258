"""The managers behind the dashboard: requests sent with this user's admin certificate, to one manager
after another when one fails (as `kubectl proxy` does for one API server).

A manager that cannot be reached, or answers 502/503/504 (no leader yet, shutting down), is skipped
for the next one; a write moves on only when it never reached a manager or was answered 503 (the
API's "not applied, try again"). The manager that answered last is tried first next time.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from warren.config import DashboardSettings
from warren.errors import UnavailableError

log = logging.getLogger(__name__)

_RETRY_READ = frozenset({502, 503, 504})
_RETRY_WRITE = frozenset({503})
# Answer headers passed to the browser; the rest (cookies, connection management) stay here.
_PASS_HEADERS = ("content-type", "retry-after", "etag", "cache-control")


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes


class AllFailed(UnavailableError):
    """No manager answered; the message says what each one did."""


class Upstream:
    """Async HTTP client of the managers at `bases` ("https://host:port"); use `aclose()` at the end."""

    def __init__(self, bases: Sequence[str], verify: Any, settings: DashboardSettings, *,
                 uds: str | None = None, transport: httpx.AsyncBaseTransport | None = None) -> None:
        if not bases:
            raise ValueError("no manager to proxy to")
        self.bases = list(bases)
        self.settings = settings
        self._current = 0
        if transport is None and uds is not None:
            transport = httpx.AsyncHTTPTransport(uds=uds)
        timeout = httpx.Timeout(settings.request_timeout_s, connect=settings.connect_timeout_s)
        self._client = httpx.AsyncClient(transport=transport, verify=True if verify is None else verify,
                                         timeout=timeout, headers={"User-Agent": "warren-dashboard"})

    async def aclose(self) -> None:
        await self._client.aclose()

    def _order(self) -> list[int]:
        n = len(self.bases)
        return [(self._current + i) % n for i in range(n)]

    async def request(self, method: str, path: str, query: list[tuple[str, str]],
                      body: bytes | None = None) -> Answer:
        """One call answered whole, from the first manager that gives a real answer."""
        failures: list[str] = []
        retry = _RETRY_READ if method == "GET" else _RETRY_WRITE
        headers = {"Content-Type": "application/json"} if body is not None else {}
        last: Answer | None = None
        for index in self._order():
            url = self.bases[index] + path
            request = self._client.build_request(method, url, params=tuple(query), content=body,
                                                 headers=headers)
            try:
                response = await self._client.send(request, stream=True)
                data = await _read_capped(response, self.settings.max_answer_bytes)
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                failures.append(f"{self.bases[index]}: {_describe(exc)}")
                continue
            except httpx.HTTPError as exc:
                if method != "GET":  # it may have reached the manager: never sent twice
                    raise AllFailed(f"{self.bases[index]}: {_describe(exc)}") from exc
                failures.append(f"{self.bases[index]}: {_describe(exc)}")
                continue
            answer = Answer(response.status_code, _passed(response.headers), data)
            if response.status_code in retry:
                failures.append(f"{self.bases[index]}: HTTP {response.status_code}")
                last = answer
                continue
            self._current = index
            return answer
        if last is not None:
            return last  # every manager said "not now": the browser sees the last one's reason
        raise AllFailed("no manager answered: " + "; ".join(failures))

    async def stream(self, path: str, query: list[tuple[str, str]],
                     last_event_id: str | None) -> tuple[int, dict[str, str], AsyncGenerator[bytes, None]]:
        """Open a stream (Server-Sent Events) at the first manager that accepts it: its status, headers
        and its body as it comes. Once open, a broken stream just ends: the browser's EventSource comes
        back with Last-Event-ID and is sent to a manager that answers. A stream silent for longer than
        stream_idle_timeout_s (keep-alives included) ends too: its manager is gone without a word."""
        headers = {"Accept": "text/event-stream", "Accept-Encoding": "identity"}
        if last_event_id is not None:
            headers["Last-Event-ID"] = last_event_id
        timeout = httpx.Timeout(self.settings.request_timeout_s, connect=self.settings.connect_timeout_s,
                                read=self.settings.stream_idle_timeout_s)
        failures: list[str] = []
        for index in self._order():
            request = self._client.build_request("GET", self.bases[index] + path,
                                                 params=tuple(query), headers=headers,
                                                 timeout=timeout)
            try:
                response = await self._client.send(request, stream=True)
            except httpx.HTTPError as exc:
                failures.append(f"{self.bases[index]}: {_describe(exc)}")
                continue
            if response.status_code in _RETRY_READ:
                failures.append(f"{self.bases[index]}: HTTP {response.status_code}")
                await response.aclose()
                continue
            self._current = index
            return response.status_code, _passed(response.headers), _chunks(response)
        raise AllFailed("no manager answered: " + "; ".join(failures))


async def _chunks(response: httpx.Response) -> AsyncGenerator[bytes, None]:
    try:
        async for chunk in response.aiter_bytes():
            yield chunk
    except httpx.HTTPError as exc:
        log.info("event stream from %s broke off: %s", response.url.host, _describe(exc))
    finally:
        await response.aclose()


async def _read_capped(response: httpx.Response, limit: int) -> bytes:
    parts: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > limit:
            await response.aclose()
            raise httpx.DecodingError(f"answer larger than {limit} bytes")
        parts.append(chunk)
    return b"".join(parts)


def _passed(headers: httpx.Headers) -> dict[str, str]:
    return {name: headers[name] for name in _PASS_HEADERS if name in headers}


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
