"""The wire under the client of a manager's HTTP API (/v1): addresses, TLS, retries, errors.

Requests that never reached a manager (connection refused, connect timeout) and answers saying the
cluster cannot serve now (503: no leader, no quorum, shutting down) are retried with exponential
backoff until `ClientSettings.retry_deadline_s`; 503's `Retry-After` is honoured up to the maximum
delay. Everything else fails at once. API errors become Warren's exception classes.

A 307/308 (a follower sending a streamed log request to the leader) is followed to its `Location`; if
the leader named there cannot be reached, the request starts over at a manager, which names the
current leader. A stream that broke off after it started is never sent again.
"""

from __future__ import annotations

import os
import re
import ssl
import time
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any, Self
from urllib.parse import urljoin, urlsplit

import httpx

from warren import __version__
from warren.config import DEFAULT_API_PORT, ClientSettings, default_data_dir
from warren.errors import (
    ConfigError,
    UnauthorizedError,
    UnavailableError,
    WarrenError,
    error_class,
)
from warren.formats import format_duration, join_host_port, split_host_port
from warren.pki import userconfig

# 503 is the API's "not now"; 502/504 come from a load balancer in front of managers (retried for reads
# only: a write may have been applied behind a gateway timeout).
_RETRY_ALWAYS = frozenset({503})
_RETRY_IDEMPOTENT = frozenset({502, 504})
_IDEMPOTENT = frozenset({"GET", "HEAD"})
_REDIRECTS = frozenset({307, 308})
# Redirects followed by one request; a leader does not redirect, so more than a couple is a loop.
_MAX_REDIRECTS = 5

JSONObject = dict[str, Any]
# The manager's unix socket in its data dir (warren.daemons.servers.SOCKET_NAME; not imported, so the
# CLI does not load the server).
SOCKET_NAME = "warren.sock"


UNIX_PREFIX = "unix:"


def base_url(manager: str, *, source: str = "--manager") -> str:
    """"https://host:port" for "host:port" or a bare host (port 8080); an http(s):// URL is kept;
    "http://localhost" for the manager's unix socket ("unix:PATH")."""
    text = manager.strip()
    if text.startswith(("http://", "https://")):
        return text.rstrip("/")
    if text.startswith(UNIX_PREFIX):
        return "http://localhost"
    host, port = split_host_port(text, field=source, default_port=DEFAULT_API_PORT)
    return f"https://{join_host_port(host, port)}"


def _local_socket() -> str | None:
    """The unix socket of a manager on this host in the default data dir, if this user may use it."""
    path = os.path.join(default_data_dir(), SOCKET_NAME)
    return path if os.path.exists(path) and os.access(path, os.R_OK | os.W_OK) else None


def _connection(addresses: list[str], source: str) -> tuple[list[str], httpx.BaseTransport | None, Any]:
    """(addresses, transport, TLS verification) for talking to `addresses`: the manager's unix socket,
    or TLS with this user's admin certificate for that cluster (warren.pki.userconfig)."""
    if addresses[0].startswith(UNIX_PREFIX):
        if len(addresses) > 1:
            raise ConfigError(f"{source}: a unix socket cannot be combined with other managers")
        return addresses, httpx.HTTPTransport(uds=addresses[0][len(UNIX_PREFIX):]), True
    creds = userconfig.find(addresses)
    if creds is not None:
        return addresses, None, creds.context()
    local = _local_socket()
    if local is not None and source == "the default manager":
        return [UNIX_PREFIX + local], httpx.HTTPTransport(uds=local), True
    raise UnauthorizedError(
        f"no admin certificate for the cluster at {addresses[0]} in {userconfig.config_dir()}: "
        "`warren cluster init` writes one for the user who ran it (copy its clusters/ directory), "
        f"or, as root on a manager host, use --manager {UNIX_PREFIX}<data-dir>/{SOCKET_NAME}"
    )


class Connection:
    """Synchronous connection to a manager, to several ("A,B,C": on a connection failure or a 503 the
    next one is tried at once, and the backoff pause comes only after every one has failed), or to a
    load balancer in front of several; `ManagerClient` (warren.client.manager) adds the API's calls.

    `transport` replaces the network (httpx.MockTransport in tests); `sleep` and `clock` the time.
    TLS uses `credentials`, or else this user's admin certificate for the cluster (found by
    warren.pki.userconfig), or else, for the default manager, a local manager's unix socket.
    Use as a context manager, or call close().
    """

    def __init__(
        self,
        manager: str,
        *,
        settings: ClientSettings | None = None,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        source: str = "--manager",
        credentials: userconfig.ClientCredentials | None = None,
    ) -> None:
        self.addresses = [a.strip() for a in manager.split(",") if a.strip()]
        if not self.addresses:
            raise ConfigError(f"{source} names no manager (expected HOST:PORT[,HOST:PORT...])")
        self._source = source
        self._transport = transport
        # Where TLS trust comes from, resolved at the first request (so usage errors found before
        # any request never need credentials): explicit credentials, else those of the cluster.
        self._verify: Any = credentials.context() if credentials is not None else None
        self._bases = [base_url(a, source=source) for a in self.addresses]
        self._current = 0
        self.settings = settings if settings is not None else ClientSettings()
        self._sleep = sleep
        self._clock = clock
        self._client: httpx.Client | None = None

    @property
    def _http(self) -> httpx.Client:
        if self._client is None:
            transport, verify = self._transport, self._verify
            if transport is None and verify is None:
                self.addresses, transport, verify = _connection(self.addresses, self._source)
                self._bases = [base_url(a, source=self._source) for a in self.addresses]
            self._client = httpx.Client(
                transport=transport,
                verify=True if verify is None else verify,
                timeout=self.settings.request_timeout_s,
                headers={"User-Agent": f"warren-cli/{__version__}", "Accept": "application/json"},
            )
        return self._client

    @property
    def address(self) -> str:
        """The manager the next request goes to."""
        return self.addresses[self._current]

    def close(self) -> None:
        if self._client is not None:
            self._client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- the wire -----------------------------------------------------------------------------------

    def request(self, method: str, path: str, *, json: object = None,
                params: Mapping[str, str] | None = None, headers: Mapping[str, str] | None = None) -> object:
        """The decoded JSON answer of a successful request; WarrenError (a subclass) otherwise."""
        response = self._send(method, path, json=json, params=params, headers=headers)
        try:
            return response.json()
        except ValueError as exc:
            raise WarrenError(f"manager at {self.address} answered {path} with something not JSON") from exc

    def _send(self, method: str, path: str, *, json: object = None,
              params: Mapping[str, str] | None = None, headers: Mapping[str, str] | None = None,
              stream: bool = False, timeout: httpx.Timeout | None = None) -> httpx.Response:
        settings = self.settings
        http = self._http  # resolves the connection (and the manager list) before the first URL
        started = self._clock()
        delay = settings.retry_initial_delay_s
        attempts = 0
        failed_in_round = 0  # managers that failed since the last pause
        redirect: str | None = None  # where the last answer sent us (the leader), for the next attempt
        redirects = 0
        while True:
            attempts += 1
            redirected = redirect is not None
            if redirect is not None:  # the Location already carries the query
                url, where, query = redirect, netloc(redirect), None
            else:
                url, where, query = self._bases[self._current] + path, self.address, params
            extra: dict[str, Any] = {} if timeout is None else {"timeout": timeout}
            request = http.build_request(method, url, json=json, params=query, headers=headers, **extra)
            redirect = None
            retry_after: float | None = None
            try:
                response = http.send(request, stream=stream)
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                if _tls_refused(exc):
                    raise UnauthorizedError(
                        f"TLS with manager at {where} failed: {describe(exc)} (is the admin "
                        f"certificate in {userconfig.config_dir()} for this cluster?)"
                    ) from exc
                # The request never reached a manager: always safe to send again.
                reason = describe(exc)
                failure: WarrenError = UnavailableError(f"cannot reach manager at {where}: {reason}")
                cause: Exception = exc
            except (httpx.ReadError, httpx.RemoteProtocolError) as exc:
                if method not in _IDEMPOTENT:
                    raise UnavailableError(
                        f"manager at {where} dropped the connection before answering: "
                        f"{describe(exc)} (the change may or may not have been made)"
                    ) from exc
                failure, cause = UnavailableError(f"manager at {where} dropped the connection"), exc
            except httpx.TimeoutException as exc:
                raise UnavailableError(
                    f"manager at {where} did not answer within "
                    f"{format_duration(settings.request_timeout_s)}"
                ) from exc
            except httpx.TransportError as exc:
                raise UnavailableError(f"cannot talk to manager at {where}: {describe(exc)}") from exc
            else:
                status = response.status_code
                location = response.headers.get("Location")
                if status in _REDIRECTS and location:
                    response.close()
                    redirects += 1
                    if redirects > _MAX_REDIRECTS:
                        raise UnavailableError(f"manager at {where} redirected {path} too many times")
                    redirect = urljoin(str(request.url), location)
                    continue
                if status < 400:
                    return response
                retryable = status in _RETRY_ALWAYS or (status in _RETRY_IDEMPOTENT and method in _IDEMPOTENT)
                try:
                    failure = self._error(response, retryable=retryable, where=where)
                finally:
                    response.close()
                if not retryable:
                    raise failure
                cause, retry_after = failure, _retry_after(response)
            redirects = 0  # counts a chain of redirects (a loop), not redirects across retries
            # A leader we were redirected to that failed is not a manager of the list: after the pause
            # the request starts over at the same manager, which names the current leader.
            if not redirected and len(self._bases) > 1:
                self._current = (self._current + 1) % len(self._bases)
                failed_in_round += 1
                if failed_in_round < len(self._bases) and self._clock() - started < settings.retry_deadline_s:
                    continue  # another manager may answer now
                failed_in_round = 0
            pause = min(retry_after if retry_after is not None else delay, settings.retry_max_delay_s)
            elapsed = self._clock() - started
            remaining = settings.retry_deadline_s - elapsed
            if remaining <= 0:
                if attempts > 1:
                    failure = type(failure)(f"{failure} (retried for {format_duration(elapsed)})")
                raise failure from cause
            # The last pause is cut short so that the last attempt happens at the deadline.
            self._sleep(min(pause, remaining))
            delay = min(delay * 2, settings.retry_max_delay_s)

    def _error(self, response: httpx.Response, *, retryable: bool, where: str) -> WarrenError:
        response.read()
        code, message = _error_body(response)
        cls = error_class(code, response.status_code)
        if message is None:
            status = f"{response.status_code} {response.reason_phrase}".rstrip()
            message = f"manager at {where} answered {status}"
        elif response.status_code == 503 and retryable:
            message = f"no leader (cluster has no quorum?) at {where}: {message}"
        return cls(message)

    def _object(self, data: object) -> JSONObject:
        if not isinstance(data, dict):
            raise WarrenError(f"manager at {self.address} gave an unexpected answer: {type(data).__name__}")
        return data

    def _list(self, data: object) -> list[JSONObject]:
        if not isinstance(data, list) or not all(isinstance(item, dict) for item in data):
            raise WarrenError(f"manager at {self.address} gave an unexpected answer: not a list of objects")
        return data


def netloc(url: str) -> str:
    return urlsplit(url).netloc


def _error_body(response: httpx.Response) -> tuple[str | None, str | None]:
    """(error code, message) from `{"error", "message"}` (or FastAPI's `{"detail": "..."}`)."""
    try:
        body = response.json()
    except ValueError:
        return None, None
    if not isinstance(body, dict):
        return None, None
    code = body.get("error") if isinstance(body.get("error"), str) else None
    message = body.get("message")
    if not isinstance(message, str) or not message:
        detail = body.get("detail")
        message = detail if isinstance(detail, str) and detail else code
    return code, message


def _retry_after(response: httpx.Response) -> float | None:
    """Seconds from a `Retry-After: <seconds>` header (the HTTP-date form is not worth honouring here)."""
    value = response.headers.get("Retry-After", "").strip()
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


_ERRNO_PREFIX = re.compile(r"^\[Errno -?\d+\]\s*")


def describe(exc: Exception) -> str:
    """A short reason: "connection refused", "name or service not known", "timed out"..."""
    text = _ERRNO_PREFIX.sub("", str(exc)).strip()
    if "refused" in text.lower():
        return "connection refused"
    if isinstance(exc, httpx.TimeoutException):
        return "connection timed out"
    if not text:
        return type(exc).__name__
    return text[0].lower() + text[1:]


def _tls_refused(exc: Exception) -> bool:
    """A connection that reached a manager but failed its TLS handshake (not worth retrying)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLError):
            return True
        seen = seen.__cause__ or seen.__context__
    return "CERTIFICATE_VERIFY_FAILED" in str(exc) or "SSL" in str(exc)
