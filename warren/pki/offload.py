"""Key and certificate work in a short-lived child process, so a daemon never keeps `cryptography`.

Python cannot unload a module: a daemon that made one key (a join, a renewal every half-lifetime, a
leader signing a node's certificate) would keep `cryptography` and its own OpenSSL, about 8 MB, for
the rest of its life. Within `enabled_in()` (the manager and worker daemons run inside it), the operations
below run in `python -m warren.pki.offload`: the request goes to its stdin and the answer comes back
on its stdout, both JSON, over pipes only this process holds. It costs a process start and an import
(about 0.15 s here) per join, renewal or issued certificate. Not enabled (tests, tools), they run
in-process, the same code.

Sealing (secrets) stays in-process: it loads `cryptography` on first use (warren.pki.sealing).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import subprocess
import sys
import weakref
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from warren import errors
from warren.errors import WarrenError

if TYPE_CHECKING:
    from warren.pki.join import JoinKey

_TIMEOUT_S = 120.0  # a slow board importing `cryptography` from an SD card; seconds
# Children at once per event loop; more callers wait. Joins and renewals are rare, and a node
# renewing in a loop must not fork without bound on the leader; children.
_MAX_CHILDREN = 2
_enabled = False
_children: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
    weakref.WeakKeyDictionary()
)


@contextlib.contextmanager
def enabled_in() -> Iterator[None]:
    """Run the operations in a child process while inside (a daemon, for its whole life)."""
    global _enabled
    was, _enabled = _enabled, True
    try:
        yield
    finally:
        _enabled = was


def enabled() -> bool:
    return _enabled


# -- the operations (JSON in, JSON out) -------------------------------------------------------------


def _new_join_key() -> dict[str, str]:
    from warren.pki.join import new_join_key

    key = new_join_key()
    return {"key_pem": key.key_pem.decode("ascii"), "csr_pem": key.csr_pem}


def _check_issued(
    cert_pem: str, key_pem: str, ca_pem: str, name: str | None, role: str | None, cluster_id: str | None
) -> float:
    from warren.pki.renewal import check_issued

    cert = check_issued(
        cert_pem.encode("ascii"),
        key_pem.encode("ascii"),
        ca_pem.encode("ascii"),
        name=name,
        role=role,  # type: ignore[arg-type]
        cluster_id=cluster_id,
    )
    return cert.not_valid_after_utc.timestamp()


def _check_csr(csr: str) -> None:
    from warren.pki import certs

    certs.csr_public_key(csr)


def _issue(
    data_key: str,
    sealed: str,
    ca_pem: str,
    csr_pem: str,
    name: str,
    role: str,
    cluster_id: str,
    lifetime_s: float,
) -> dict[str, Any]:
    from warren.pki import certs
    from warren.pki.founding import open_ca_key

    public = certs.csr_public_key(csr_pem)
    key = open_ca_key(base64.b64decode(data_key), sealed)
    ca_cert = certs.load_cert(ca_pem.encode("ascii"))
    cert = certs.issue(
        key,
        ca_cert,
        public,
        name=name,
        role=role,  # type: ignore[arg-type]
        cluster_id=cluster_id,
        lifetime_s=lifetime_s,
    )
    return {
        "cert_pem": certs.cert_pem(cert).decode("ascii"),
        "fingerprint": certs.fingerprint(cert),
        "expires_at": certs.expires_at(cert),
    }


def _found_pki(node_lifetime_s: float, data_dir: str, cluster_id: str, name: str) -> str:
    from warren.pki.founding import make_pki

    return make_pki(node_lifetime_s, data_dir, cluster_id, name)


OPS: dict[str, Callable[..., Any]] = {
    "found_pki": _found_pki,
    "new_join_key": _new_join_key,
    "check_issued": _check_issued,
    "check_csr": _check_csr,
    "issue": _issue,
}


def _answer(request: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(request)
        return {"ok": OPS[doc["op"]](**doc["args"])}
    except WarrenError as exc:
        return {"error": type(exc).__name__, "message": str(exc)}
    except Exception as exc:  # noqa: BLE001 - the child's boundary: its answer is all the caller gets
        # Never the exception's text or a traceback: the request held keys, and a peer's CSR is input.
        return {"error": "InvalidError", "message": f"{type(exc).__name__} in the key helper process"}


def _result(op: str, answer: bytes, stderr: bytes, returncode: int | None) -> Any:
    try:
        doc = json.loads(answer)
    except ValueError:
        tail = stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or [f"exit {returncode}"]
        raise WarrenError(f"the key helper process failed ({op}): {tail[0]}") from None
    if "error" in doc:
        cls = getattr(errors, str(doc["error"]), WarrenError)
        if not (isinstance(cls, type) and issubclass(cls, WarrenError)):
            cls = WarrenError
        raise cls(str(doc["message"]))
    return doc["ok"]


def _command() -> list[str]:
    # -P: the daemon's working directory is not put on the child's path (a `warren` directory there
    # must not stand in for the installed package); PYTHONPATH still counts, as for the daemon.
    return [sys.executable, "-P", "-m", "warren.pki.offload"]


async def run(op: str, **args: Any) -> Any:
    """`OPS[op](**args)`: in a child process once enabled, else here (in a thread: it may make a key)."""
    if not _enabled:
        return await asyncio.to_thread(OPS[op], **args)
    request = json.dumps({"op": op, "args": args}).encode()
    loop = asyncio.get_running_loop()
    limit = _children.setdefault(loop, asyncio.Semaphore(_MAX_CHILDREN))
    async with limit:
        proc = await asyncio.create_subprocess_exec(
            *_command(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        try:
            out, err = await asyncio.wait_for(proc.communicate(request), _TIMEOUT_S)
        except BaseException:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            raise
    return _result(op, out, err, proc.returncode)


def run_sync(op: str, **args: Any) -> Any:
    """As `run`, for code outside the event loop."""
    if not _enabled:
        return OPS[op](**args)
    request = json.dumps({"op": op, "args": args}).encode()
    done = subprocess.run(_command(), input=request, capture_output=True, timeout=_TIMEOUT_S, check=False)
    return _result(op, done.stdout, done.stderr, done.returncode)


# -- typed front ends ----------------------------------------------------------------------------------


async def new_join_key() -> JoinKey:
    """warren.pki.join.new_join_key, offloaded."""
    from warren.pki.join import JoinKey

    doc = await run("new_join_key")
    return JoinKey(str(doc["key_pem"]).encode("ascii"), str(doc["csr_pem"]))


async def check_issued(
    cert_pem: bytes,
    key_pem: bytes,
    ca_pem: bytes,
    *,
    name: str | None = None,
    role: str | None = None,
    cluster_id: str | None = None,
) -> float:
    """warren.pki.renewal.check_issued, offloaded: the certificate's expiry (InvalidError if it is not
    one this node can use)."""
    expires = await run(
        "check_issued",
        cert_pem=cert_pem.decode("ascii"),
        key_pem=key_pem.decode("ascii"),
        ca_pem=ca_pem.decode("ascii"),
        name=name,
        role=role,
        cluster_id=cluster_id,
    )
    return float(expires)


def main() -> int:
    sys.stdout.write(json.dumps(_answer(sys.stdin.buffer.read())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
