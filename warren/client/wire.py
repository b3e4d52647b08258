"""The wire under the client of a manager's HTTP API (/v1): addresses, TLS, retries, errors.

Requests that never reached a manager (connection refused, connect timeout) and answers saying the
cluster cannot serve now (503: no leader, no quorum, shutting down) are retried with exponential
backoff until `ClientSettings.retry_deadline_s`; 503's `Retry-After` is honoured up to the maximum
delay. Everything else fails at once. API errors become Warren's exception classes.

A 307/308 (a follower sending a streamed log request to the leader) is followed to its `Location`; if
the leader named there cannot be reached, the request starts over at a manager, which names the
current leader. A stream that broke off after it started is never sent again.

A call answered whole goes over http.client (warren.client.plain: httpx's import alone is about half of
a short command's time); streams, the unix socket and an injected transport (tests) over httpx, which
is then imported. Both use the same TLS context, and their failures are sorted the same way
(`plain.NoAnswer`).
"""

from __future__ import annotations

import os
import re
import ssl
import sys
import time
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol, Self
from urllib.parse import urljoin, urlsplit

from warren import __version__
from warren.client.plain import NoAnswer, PlainWire, encode_json, full_url
from warren.config import DEFAULT_API_PORT, ClientSettings, default_data_dir
from warren.errors import (
    ConfigError,
    UnauthorizedError,
    UnavailableError,
    UnreachableError,
    WarrenError,
    error_class,
)
from warren.formats import format_duration, join_host_port, split_host_port
from warren.pki import userconfig

if TYPE_CHECKING:
    import httpx

# 503 is the API's "not now"; 502/504 come from a load balancer in front of managers (retried for reads
# only: a write may have been applied behind a gateway timeout).
_RETRY_ALWAYS = frozenset({503})
_RETRY_IDEMPOTENT = frozenset({502, 504})
_IDEMPOTENT = frozenset({"GET", "HEAD"})
_REDIRECTS = frozenset({307, 308})
# Redirects followed by one request; a leader does not redirect, so more than a couple is a loop.
_MAX_REDIRECTS = 5

JSONObject = dict[str, Any]
_HEADERS = {"User-Agent": f"warren-cli/{__version__}", "Accept": "application/json"}
# The manager's unix socket in its data dir (warren.daemons.servers.SOCKET_NAME; not imported, so the
# CLI does not load the server).
SOCKET_NAME = "warren.sock"


UNIX_PREFIX = "unix:"


class Answer(Protocol):
    """What the wire reads of an answer: httpx.Response, or plain.Reply for one read whole. Header names
    are looked up in lower case (httpx's are case-insensitive, Reply's lower case)."""

    @property
    def status_code(self) -> int: ...
    @property
    def reason_phrase(self) -> str: ...
    @property
    def headers(self) -> Mapping[str, str]: ...
    def json(self) -> Any: ...
    def read(self) -> bytes: ...
    def close(self) -> None: ...


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
        import httpx

        return addresses, httpx.HTTPTransport(uds=addresses[0][len(UNIX_PREFIX):]), True
    creds = userconfig.find(addresses)
    if creds is not None:
        return addresses, None, creds.context()
    local = _local_socket()
    if local is not None and source == "the default manager":
        import httpx

        return [UNIX_PREFIX + local], httpx.HTTPTransport(uds=local), True
    raise UnauthorizedError(
        f"no admin certificate for the cluster at {addresses[0]} in {userconfig.config_dir()}: "
        "`warren cluster init` writes one for the user who ran it (copy its clusters/ directory), "
        f"or, as root on a manager host, use --manager {UNIX_PREFIX}<data-dir>/{SOCKET_NAME}"
    )


def resolve(manager: str, *, source: str = "--manager") -> tuple[list[str], str | None, Any]:
    """Where another HTTP client (the dashboard's async proxy, warren.dashboard) sends requests for
    `manager` ("A,B,C" or "unix:PATH") and how, found as Connection finds it: (base URLs, the unix
    socket's path or None, TLS verification: an ssl.SSLContext with this user's admin certificate)."""
    addresses = [a.strip() for a in manager.split(",") if a.strip()]
    if not addresses:
        raise ConfigError(f"{source} names no manager (expected HOST:PORT[,HOST:PORT...])")
    addresses, transport, verify = _connection(addresses, source)
    if transport is not None:
        transport.close()  # the sync transport is Connection's; the caller builds its own
    uds = addresses[0][len(UNIX_PREFIX):] if addresses[0].startswith(UNIX_PREFIX) else None
    return [base_url(a, source=source) for a in addresses], uds, verify


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
        self._resolved = False
        self._client: httpx.Client | None = None
        self._plain: PlainWire | None = None

    def _resolve(self) -> None:
        """Where the requests go and how (once, at the first request): the unix socket or TLS."""
        if not self._resolved:
            if self._transport is None and self._verify is None:
                self.addresses, self._transport, self._verify = _connection(self.addresses, self._source)
                self._bases = [base_url(a, source=self._source) for a in self.addresses]
            self._resolved = True

    @property
    def _http(self) -> httpx.Client:
        if self._client is None:
            import httpx

            self._resolve()
            self._client = httpx.Client(
                transport=self._transport,
                verify=True if self._verify is None else self._verify,
                timeout=self.settings.request_timeout_s,
                headers=_HEADERS,
            )
        return self._client

    def _light(self) -> PlainWire | None:
        """The http.client wire, when requests go over TCP with a TLS context (not the unix socket, not
        an injected transport)."""
        self._resolve()
        if self._transport is not None or not isinstance(self._verify, ssl.SSLContext):
            return None
        if self._plain is None:
            self._plain = PlainWire(self._verify, self.settings.request_timeout_s, _HEADERS,
                                    max_answer_bytes=self.settings.max_answer_bytes)
        return self._plain

    @property
    def address(self) -> str:
        """The manager the next request goes to."""
        return self.addresses[self._current]

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
        if self._plain is not None:
            self._plain.close()

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

    def _stream(self, method: str, path: str, *, params: Mapping[str, str] | None = None,
                timeout: httpx.Timeout | None = None) -> httpx.Response:
        """A request whose answer is read as it comes (httpx), once its headers say it succeeded."""
        import httpx

        response = self._send(method, path, params=params, stream=True, timeout=timeout)
        assert isinstance(response, httpx.Response)  # stream=True always goes through httpx
        return response

    def _send(self, method: str, path: str, *, json: object = None,
              params: Mapping[str, str] | None = None, headers: Mapping[str, str] | None = None,
              stream: bool = False, timeout: httpx.Timeout | None = None) -> Answer:
        settings = self.settings
        self._resolve()  # the connection (and the manager list) before the first URL
        started = self._clock()
        delay = settings.retry_initial_delay_s
        attempts = 0
        failed_in_round = 0  # managers that failed since the last pause
        redirect: str | None = None  # where the last answer sent us (the leader), for the next attempt
        redirects = 0
        reached = False  # some attempt got to a manager (so a write may have been made)
        while True:
            attempts += 1
            redirected = redirect is not None
            if redirect is not None:  # the Location already carries the query
                url, where, query = redirect, netloc(redirect), None
            else:
                url, where, query = self._bases[self._current] + path, self.address, params
            target = full_url(url, query)
            redirect = None
            retry_after: float | None = None
            try:
                response = self._attempt(method, url, query, json, headers, stream, timeout)
            except NoAnswer as failed:
                exc = failed.cause
                if failed.kind == "unreached":
                    if _tls_refused(exc):
                        raise UnauthorizedError(
                            f"TLS with manager at {where} failed: {describe(exc)} (is the admin "
                            f"certificate in {userconfig.config_dir()} for this cluster?)"
                        ) from exc
                    # The request never reached a manager: always safe to send again.
                    reason = describe(exc)
                    message = f"cannot reach manager at {where}: {reason}"
                    failure: WarrenError = UnavailableError(message) if reached else UnreachableError(message)
                    cause: BaseException = exc
                elif failed.kind == "dropped":
                    reached = True
                    if method not in _IDEMPOTENT:
                        raise UnavailableError(
                            f"manager at {where} dropped the connection before answering: "
                            f"{describe(exc)} (the change may or may not have been made)"
                        ) from exc
                    failure, cause = UnavailableError(f"manager at {where} dropped the connection"), exc
                elif failed.kind == "timeout":
                    raise UnavailableError(
                        f"manager at {where} did not answer within "
                        f"{format_duration(settings.request_timeout_s)}"
                    ) from exc
                else:
                    raise UnavailableError(f"cannot talk to manager at {where}: {describe(exc)}") from exc
            else:
                reached = True
                status = response.status_code
                location = response.headers.get("location")
                if status in _REDIRECTS and location:
                    response.close()
                    redirects += 1
                    if redirects > _MAX_REDIRECTS:
                        raise UnavailableError(f"manager at {where} redirected {path} too many times")
                    redirect = urljoin(target, location)
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

    def _attempt(self, method: str, url: str, query: Mapping[str, str] | None, json: object,
                 headers: Mapping[str, str] | None, stream: bool, timeout: httpx.Timeout | None) -> Answer:
        """One request to `url`; NoAnswer when none came (httpx's errors sorted as plain's are)."""
        light = None if stream else self._light()
        if light is not None:
            body = None if json is None else encode_json(json)
            return light.send(method, full_url(url, query), body=body, headers=headers)
        import httpx

        http = self._http
        extra: dict[str, Any] = {} if timeout is None else {"timeout": timeout}
        request = http.build_request(method, url, json=json, params=query, headers=headers, **extra)
        try:
            return http.send(request, stream=stream)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise NoAnswer("unreached", exc) from exc
        except (httpx.ReadError, httpx.RemoteProtocolError) as exc:
            raise NoAnswer("dropped", exc) from exc
        except httpx.TimeoutException as exc:
            raise NoAnswer("timeout", exc) from exc
        except httpx.TransportError as exc:
            raise NoAnswer("broken", exc) from exc

    def _error(self, response: Answer, *, retryable: bool, where: str) -> WarrenError:
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


def _error_body(response: Answer) -> tuple[str | None, str | None]:
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


def _retry_after(response: Answer) -> float | None:
    """Seconds from a `Retry-After: <seconds>` header (the HTTP-date form is not worth honouring here)."""
    value = response.headers.get("retry-after", "").strip()
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


_ERRNO_PREFIX = re.compile(r"^\[Errno -?\d+\]\s*")


def describe(exc: BaseException) -> str:
    """A short reason: "connection refused", "name or service not known", "timed out"..."""
    text = _ERRNO_PREFIX.sub("", str(exc)).strip()
    if "refused" in text.lower():
        return "connection refused"
    httpx = sys.modules.get("httpx")  # only an httpx error if httpx was loaded
    if isinstance(exc, TimeoutError) or (httpx is not None and isinstance(exc, httpx.TimeoutException)):
        return "connection timed out"
    if not text:
        return type(exc).__name__
    return text[0].lower() + text[1:]


def _tls_refused(exc: BaseException) -> bool:
    """A connection that reached a manager but failed its TLS handshake (not worth retrying)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLError):
            return True
        seen = seen.__cause__ or seen.__context__
    return "CERTIFICATE_VERIFY_FAILED" in str(exc) or "SSL" in str(exc)
