"""Docker Engine calls the SDK leaves unbounded, and the engine's own formats.

`pull` and `exec_in` take a `docker.DockerClient` but do not import the SDK (only docker.py does):
the SDK's pull waits without limit, and its `exec_run` cannot be abandoned, so both are done here
over the client's HTTP session with deadlines of their own. Everything here blocks: call it in a
thread.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import re
import time
from typing import Any

import requests


def split_image(image: str) -> tuple[str, str | None]:
    """(repository, tag or digest) of an image reference: "reg:5000/app:1.2" -> ("reg:5000/app",
    "1.2"); "app@sha256:..." -> ("app", "sha256:..."); no tag -> (image, None)."""
    if "@" in image:
        repository, digest = image.split("@", 1)
        return repository, digest
    repository, sep, tag = image.rpartition(":")
    if not sep or "/" in tag:  # no colon, or the colon was a registry's port
        return image, None
    return repository, tag


class PullError(Exception):
    """The engine answered a pull with an error, or the pull did not finish in time."""


def pull(client: Any, image: str, stall_s: float, timeout_s: float) -> None:
    """Pull `image`: give up when the engine is silent for `stall_s` or the pull is not done within
    `timeout_s`. The SDK's own pull waits without limit, which would hang a start while the engine
    keeps trying an unreachable registry."""
    api = client.api
    repository, tag = split_image(image)
    deadline = time.monotonic() + timeout_s
    try:
        response = api.post(
            api._url("/images/create"),
            params={"fromImage": repository, "tag": tag or "latest"},
            stream=True,
            timeout=stall_s,  # connect and every read
        )
    except requests.exceptions.Timeout as exc:
        raise PullError(f"the Docker Engine did not answer within {stall_s:g}s") from exc
    with response:
        if response.status_code >= 400:
            raise PullError(_error_body(response))
        try:
            for line in response.iter_lines():
                if time.monotonic() > deadline:
                    raise PullError(f"not finished within {timeout_s:g}s")
                if not line:
                    continue
                message = json.loads(line)
                if "error" in message:
                    raise PullError(str(message["error"]))
        except requests.exceptions.RequestException as exc:
            raise PullError(f"no progress for {stall_s:g}s") from exc
        except ValueError as exc:
            raise PullError(f"unreadable answer from the Docker Engine: {exc}") from exc


def _error_body(response: Any) -> str:
    try:
        return str(response.json().get("message", response.text))
    except ValueError:
        return str(response.text or response.reason)


def exec_in(client: Any, container_id: str, cmd: list[str], timeout_s: float) -> int:
    """Run `cmd` in the container and drain its output until it exits or `timeout_s` passes. The
    socket's own timeout bounds every read, so the thread never outlives the deadline by much."""
    api = client.api
    deadline = time.monotonic() + timeout_s
    exec_id = api.exec_create(container_id, cmd, stdout=True, stderr=True)["Id"]
    sock = api.exec_start(exec_id, socket=True)
    raw = getattr(sock, "_sock", sock)
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return -1
            raw.settimeout(remaining)
            if not sock.read(65536):
                break
    except (TimeoutError, OSError):
        return -1
    finally:
        with contextlib.suppress(OSError):
            sock.close()
            raw.close()  # SocketIO.close leaves the socket itself open
    # The output ends when the process exits; its status is recorded a moment later.
    while True:
        code = api.exec_inspect(exec_id).get("ExitCode")
        if code is not None:
            return int(code)
        if time.monotonic() > deadline:
            return -1
        time.sleep(0.01)


def explain(exc: BaseException) -> str:
    """The engine's own words for an API error (its `explanation`), else the exception's text."""
    explanation = getattr(exc, "explanation", None)
    if isinstance(explanation, bytes):
        explanation = explanation.decode(errors="replace")
    return str(explanation or exc).strip()


def parse_time(text: str | None) -> float | None:
    """Epoch seconds of a Docker timestamp ("2024-05-01T12:00:00.123456789Z"); None for Docker's zero
    time (never started)."""
    if not text or text.startswith("0001-"):
        return None
    match = re.match(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$", text)
    if match is None:
        return None
    base, fraction, zone = match.groups()
    stamp = dt.datetime.fromisoformat(base + ("+00:00" if zone == "Z" else zone))
    return stamp.timestamp() + (float("0." + fraction) if fraction else 0.0)
