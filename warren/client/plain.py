"""A request and its whole answer over the standard library's http.client: the wire's light path.

A CLI command makes one call or a few, and reads each answer whole. httpx (with httpcore, h11 and
their imports) costs a command about 70 ms of a ~150 ms budget before the first byte is sent
(docs/decisions.md, "`warren service ls`: where the time goes"); http.client and ssl are what that
request needs. TLS is the caller's context, used as it is: the cluster CA pinned, the admin certificate
presented, the server verified as a manager (warren.pki.material.client_context), exactly as httpx used
it. Streams (logs, backups), the unix socket and injected transports stay with httpx (warren.client.wire).

One keep-alive connection per scheme and host; one the server has closed while it sat idle is replaced
before a request is written to it, so a write is never sent into a dead connection. Failures come out as
`NoAnswer`, saying how far the attempt got; the wire decides what to retry.
"""

from __future__ import annotations

import http.client
import json
import select
import ssl
from collections.abc import Mapping
from typing import Any, Literal
from urllib.parse import urlencode, urlsplit

from warren.errors import UnavailableError

# How far an attempt without an answer got: never reached the manager (connect or TLS handshake), the
# connection was dropped after the request was sent, no answer in time, or anything else on the way.
Failure = Literal["unreached", "dropped", "timeout", "broken"]


class NoAnswer(Exception):
    """An attempt that got no HTTP answer; `kind` says how far it got, `cause` is the error."""

    def __init__(self, kind: Failure, cause: BaseException) -> None:
        super().__init__(f"{kind}: {cause}")
        self.kind = kind
        self.cause = cause


class Reply:
    """A whole answer: status, reason, headers (names in lower case), body."""

    def __init__(self, status: int, reason: str, headers: Mapping[str, str], body: bytes) -> None:
        self.status_code = status
        self.reason_phrase = reason
        self.headers = {k.lower(): v for k, v in headers.items()}
        self.body = body

    def json(self) -> Any:
        return json.loads(self.body)

    def read(self) -> bytes:
        return self.body

    def close(self) -> None:
        pass


def encode_json(doc: object) -> bytes:
    """A JSON body as httpx writes one (compact, UTF-8, no NaN)."""
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8")


def full_url(url: str, params: Mapping[str, str] | None) -> str:
    return f"{url}?{urlencode(params)}" if params else url


class PlainWire:
    """Requests over http.client: HTTPS with `tls`, or plain HTTP for an http:// URL."""

    def __init__(self, tls: ssl.SSLContext, timeout_s: float, headers: Mapping[str, str], *,
                 max_answer_bytes: int) -> None:
        self._tls = tls
        self._timeout_s = timeout_s
        self._headers = dict(headers)
        self._max_answer_bytes = max_answer_bytes
        self._conns: dict[tuple[str, str], http.client.HTTPConnection] = {}

    def send(self, method: str, url: str, *, body: bytes | None = None,
             headers: Mapping[str, str] | None = None) -> Reply:
        """`method url` (its query included); raises NoAnswer when no answer came."""
        parts = urlsplit(url)
        conn = self._connection(parts.scheme, parts.netloc)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        sent = {**self._headers, **(headers or {})}
        if body is not None:
            sent["Content-Type"] = "application/json"
        try:
            if conn.sock is None:
                conn.connect()
        except OSError as exc:  # refused, no route, timed out, TLS handshake refused (ssl.SSLError)
            conn.close()
            raise NoAnswer("unreached", exc) from exc
        try:
            conn.request(method, target, body=body, headers=sent)
            response = conn.getresponse()
            data = response.read(self._max_answer_bytes + 1)
            if len(data) > self._max_answer_bytes:
                conn.close()
                raise UnavailableError(f"the manager's answer to {method} {parts.path} is larger than "
                                     f"{self._max_answer_bytes} bytes (max_answer_bytes): not read")
        except TimeoutError as exc:
            conn.close()
            raise NoAnswer("timeout", exc) from exc
        except (ConnectionError, ssl.SSLError, http.client.HTTPException) as exc:
            conn.close()
            raise NoAnswer("dropped", exc) from exc
        except OSError as exc:
            conn.close()
            raise NoAnswer("broken", exc) from exc
        if response.will_close:
            conn.close()
        return Reply(response.status, response.reason, dict(response.getheaders()), data)

    def close(self) -> None:
        for conn in self._conns.values():
            conn.close()
        self._conns.clear()

    def _connection(self, scheme: str, netloc: str) -> http.client.HTTPConnection:
        conn = self._conns.get((scheme, netloc))
        if conn is not None and conn.sock is not None and _closed_by_peer(conn.sock):
            conn.close()  # http.client opens it again on the next request
        if conn is None:
            if scheme == "https":
                conn = http.client.HTTPSConnection(netloc, timeout=self._timeout_s, context=self._tls)
            else:
                conn = http.client.HTTPConnection(netloc, timeout=self._timeout_s)
            self._conns[(scheme, netloc)] = conn
        return conn


def _closed_by_peer(sock: Any) -> bool:
    """An idle keep-alive connection with something to read has been closed by the server (or is out of
    step with it): either way not one to write a request into."""
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)
