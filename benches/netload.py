"""The measuring tools of the networking scenario: one backend, one client, one load generator, one DNS
client, used the same way for Warren and for Docker, so the paths differ only in what sits between them.

- The backend is a small asyncio HTTP/1.1 keep-alive responder (`BACKEND`, 2-byte body) run by this
  machine's Python. Inside a container it runs in the container's network namespace (`nsenter -n -t
  PID`, the container itself only sleeps): the image has no Python, and busybox httpd closes every
  connection, so it could not be measured on a kept connection.
- Latency is measured here, in the bench process (sequential, one request at a time, plain blocking
  sockets with TCP_NODELAY): from just before connect() (new connection) or send() (kept connection)
  until the whole answer has been read.
- Requests/s comes from wrk (Debian's package; `make peers` installs it), C connections for a fixed
  duration, keep-alive: a C load generator in its own process, so the client is not the bottleneck.
- DNS: `DNS_CLIENT`, dnspython's stub resolver, one query at a time, run as its own process (on the
  host, or in a container's network namespace for Docker's embedded DNS).

Traffic goes only to loopback and to containers this run started.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from warren.testing.wait import eventually

READY_TIMEOUT_S = 15.0  # a backend or proxy to accept connections; seconds
IO_TIMEOUT_S = 5.0  # one request's connect/read; seconds
REQUEST = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n"
MAX_ANSWER = 65536  # bytes read for one answer at most (our backend sends ~60)

# argv: HOST PORT. Answers every request with 200 "ok", keeps the connection unless asked to close.
BACKEND = r"""
import asyncio, sys
try:
    import uvloop
except ImportError:
    uvloop = None
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok"
CLOSE = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"

async def serve(reader, writer):
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            if b"connection: close" in head.lower():
                writer.write(CLOSE)
                await writer.drain()
                break
            writer.write(OK)
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
        pass
    finally:
        writer.close()

async def main():
    server = await asyncio.start_server(serve, sys.argv[1], int(sys.argv[2]), backlog=1024)
    print("ready", flush=True)
    await server.serve_forever()

(uvloop.run if uvloop else asyncio.run)(main())
"""

# argv: NAMESERVER PORT N NAME... Prints {"NAME": [seconds, ...], "errors": {NAME: "why"}} (one line).
DNS_CLIENT = r"""
import json, sys, time
import dns.rcode, dns.resolver
server, port, n, names = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4:]
r = dns.resolver.Resolver(configure=False)
r.nameservers = [server]
r.port = port
r.lifetime = 2.0
r.cache = None
out, errors = {}, {}
for name in names:
    times = []
    for _ in range(3 + n):  # 3 untimed first
        t0 = time.perf_counter()
        try:
            r.resolve(name, "A")
        except dns.resolver.NXDOMAIN:
            pass  # an answer too: the miss is what is timed
        except Exception as exc:
            errors[name] = f"{type(exc).__name__}: {exc}"
            break
        times.append(time.perf_counter() - t0)
    out[name] = times[3:]
print(json.dumps({"times": out, "errors": errors}))
"""


class LoadError(Exception):
    """A backend, proxy or load generator could not be started or gave no usable answer."""


def nsenter(pid: int) -> list[str]:
    """Prefix that runs a command in the network namespace of process `pid` (a container's)."""
    return ["nsenter", "-n", "-t", str(pid)]


def start_backend(host: str, port: int, log: Path, prefix: Sequence[str] = ()) -> subprocess.Popen[bytes]:
    """The BACKEND on host:port (in the namespace `prefix` enters), once it said ready."""
    out = log.open("ab")
    proc = subprocess.Popen(
        [*prefix, sys.executable, "-c", BACKEND, host, str(port)],
        stdout=subprocess.PIPE,
        stderr=out,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    out.close()
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if line.strip() != b"ready":
        stop(proc)
        raise LoadError(f"backend on {host}:{port} did not start: {log.read_text()[-500:]}")
    return proc


def stop(proc: subprocess.Popen[Any]) -> None:
    """SIGKILL a helper process (its own session) and reap it."""
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=10)


def wait_answers(host: str, port: int, timeout_s: float = READY_TIMEOUT_S) -> None:
    """Until one request on a new connection to host:port gets its answer."""
    eventually(lambda: _try_once(host, port), timeout_s, f"an HTTP answer from {host}:{port}", poll_s=0.05)


def _try_once(host: str, port: int) -> bool:
    try:
        one_request(host, port)
    except OSError:
        return False
    return True


def _read_answer(sock: socket.socket) -> None:
    """Read one HTTP answer (headers and Content-Length body) off `sock`."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("closed before the answer's headers")
        data += chunk
        if len(data) > MAX_ANSWER:
            raise ConnectionError("answer headers too long")
    head, _, body = data.partition(b"\r\n\r\n")
    match = re.search(rb"(?i)content-length:\s*(\d+)", head)
    if not head.startswith(b"HTTP/1.1 200") or match is None:
        raise ConnectionError(f"unexpected answer: {head[:80]!r}")
    need = int(match.group(1))
    if need > MAX_ANSWER:
        raise ConnectionError("answer body too long")
    while len(body) < need:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("closed inside the answer's body")
        body += chunk


def _connect(host: str, port: int) -> socket.socket:
    sock = socket.create_connection((host, port), timeout=IO_TIMEOUT_S)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def one_request(host: str, port: int) -> float:
    """Seconds for connect + one request + its whole answer on a new connection (then closed)."""
    t0 = time.perf_counter()
    with _connect(host, port) as sock:
        sock.sendall(REQUEST)
        _read_answer(sock)
        return time.perf_counter() - t0


def latencies(host: str, port: int, n: int, *, kept: bool, warmup: int = 20) -> list[float]:
    """`n` sequential requests' latencies (after `warmup` untimed): each on a new connection, or all
    on one kept connection. Raises OSError on the first failure (a path that fails is not measured)."""
    if not kept:
        for _ in range(warmup):
            one_request(host, port)
        return [one_request(host, port) for _ in range(n)]
    out: list[float] = []
    with _connect(host, port) as sock:
        for i in range(warmup + n):
            t0 = time.perf_counter()
            sock.sendall(REQUEST)
            _read_answer(sock)
            if i >= warmup:
                out.append(time.perf_counter() - t0)
    return out


def wrk_unavailable() -> str | None:
    return None if shutil.which("wrk") else "wrk is not installed (`make peers` installs Debian's wrk)"


def wrk_version() -> str | None:
    if shutil.which("wrk") is None:
        return None
    done = subprocess.run(["wrk", "--version"], capture_output=True, text=True, timeout=10)
    return (done.stdout or done.stderr).splitlines()[0].strip() if (done.stdout or done.stderr) else None


def wrk(host: str, port: int, connections: int, duration_s: float, threads: int = 2) -> dict[str, Any]:
    """Requests/s with `connections` keep-alive connections for `duration_s` (wrk); non-2xx answers
    and socket errors are counted, not hidden."""
    seconds = max(1, round(duration_s))
    argv = [
        "wrk",
        "-t",
        str(min(threads, connections)),
        "-c",
        str(connections),
        "-d",
        f"{seconds}s",
        "--timeout",
        "2s",
        f"http://{host}:{port}/",
    ]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 30)
    match = re.search(r"Requests/sec:\s*([\d.]+)", done.stdout)
    if done.returncode != 0 or match is None:
        raise LoadError(f"wrk failed (exit {done.returncode}): {(done.stdout + done.stderr)[-400:]}")
    errors = re.search(r"Socket errors: (.*)", done.stdout)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", done.stdout)
    return {
        "requests_per_s": float(match.group(1)),
        "connections": connections,
        "duration_s": seconds,
        "socket_errors": errors.group(1).strip() if errors else None,
        "non_2xx": int(non2xx.group(1)) if non2xx else 0,
    }


def dns_queries(
    server: str, port: int, names: Sequence[str], n: int, prefix: Sequence[str] = ()
) -> tuple[dict[str, list[float]], dict[str, str]]:
    """Per name, `n` sequential query latencies (seconds) from DNS_CLIENT, and per failing name why."""
    argv = [*prefix, sys.executable, "-c", DNS_CLIENT, server, str(port), str(n), *names]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60 + 2 * n * len(names))
    if done.returncode != 0:
        raise LoadError(f"DNS client failed (exit {done.returncode}): {done.stderr[-400:]}")
    doc = json.loads(done.stdout)
    return doc["times"], doc["errors"]


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])
