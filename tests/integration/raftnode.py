"""One Raft member as a process, driven by JSON lines: the unit that integration tests and benches kill.

Run as `python -m tests.integration.raftnode --id N --listen 127.0.0.X:PORT --data DIR [...]`.

stdin carries commands `{"id": n, "op": "...", ...args}`; stdout carries exactly one line per command,
`{"id": n, "ok": true, "result": ...}` or `{"id": n, "ok": false, "error": "<ExceptionClass>",
"message": ..., "leader_id": ..., "leader_addr": ...}`, plus two unsolicited lines: `{"event": "ready",
...}` once the node is open and `{"fatal": "<ExceptionClass>", "message": ...}` if it cannot open (exit
code 3) or its state machine stops (exit code 4; also when the core stops on a storage fault: then
`next_work` raises StorageError naming the file and errno). Logs go to stderr. Commands run as
concurrent asyncio tasks, so a propose that waits for a quorum does not hold up `metrics`.

The state machine is deliberately trivial (a list of applied entries) so that tests can compare the
exact applied history of every member.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import logging
import os
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import warren_raft

from warren.config import RaftSettings
from warren.raft_bridge import drive

log = logging.getLogger("tests.integration.raftnode")

EXIT_OPEN_FAILED = 3
EXIT_STATE_MACHINE_FAILED = 4


class ListStateMachine:
    """Remembers every applied (index, payload); answers each entry with its index as ASCII bytes."""

    def __init__(self) -> None:
        self.entries: list[tuple[int, bytes]] = []

    def apply(self, entries: list[tuple[int, int, bytes]]) -> list[bytes]:
        responses = []
        for index, _term, payload in entries:
            self.entries.append((index, payload))
            responses.append(str(index).encode())
        return responses

    def snapshot(self, path: str) -> None:
        doc = [[index, base64.b64encode(payload).decode("ascii")] for index, payload in self.entries]
        with open(path, "w", encoding="utf-8") as f:
            json.dump(doc, f)
            f.flush()
            os.fsync(f.fileno())

    def restore(self, path: str | None) -> None:
        if path is None:
            self.entries = []
            return
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
        self.entries = [(int(index), base64.b64decode(payload)) for index, payload in doc]


def write_line(obj: dict[str, Any]) -> None:
    """One JSON document per line; only the event-loop thread writes, so lines never interleave."""
    sys.stdout.write(json.dumps(obj, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def exit_now(code: int) -> None:
    """Leave without interpreter finalisation: the core's threads must not outlive a torn-down runtime."""
    sys.stdout.flush()
    logging.shutdown()
    os._exit(code)


class Server:
    """Maps command ops to RaftNode calls; each command runs as its own task."""

    def __init__(self, node: warren_raft.RaftNode, sm: ListStateMachine) -> None:
        self.node = node
        self.sm = sm
        self.tasks: set[asyncio.Task[None]] = set()
        self.ops: dict[str, Callable[..., Awaitable[Any]]] = {
            "ping": self.op_ping,
            "bootstrap": self.op_bootstrap,
            "propose": self.op_propose,
            "propose_many": self.op_propose_many,
            "read_barrier": self.op_read_barrier,
            "metrics": self.op_metrics,
            "state": self.op_state,
            "add_learner": self.op_add_learner,
            "add_voter": self.op_add_voter,
            "change_membership": self.op_change_membership,
            "remove_node": self.op_remove_node,
            "transfer_leadership": self.op_transfer_leadership,
            "trigger_snapshot": self.op_trigger_snapshot,
            "busy": self.op_busy,
            "update_tls": self.op_update_tls,
            "set_revoked": self.op_set_revoked,
            "bench": self.op_bench,
            "shutdown": self.op_shutdown,
        }

    def submit(self, line: str) -> None:
        task = asyncio.create_task(self.handle(line))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def handle(self, line: str) -> None:
        try:
            cmd = json.loads(line)
            req_id = cmd.pop("id")
            op = cmd.pop("op")
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            log.error("unparseable command %r: %s", line, exc)
            write_line({"id": None, "ok": False, "error": "BadCommand", "message": str(exc)})
            return
        try:
            handler = self.ops[op]
        except KeyError:
            write_line({"id": req_id, "ok": False, "error": "BadCommand", "message": f"unknown op {op!r}"})
            return
        try:
            result = await handler(**cmd)
        except Exception as exc:  # task boundary: every failure becomes the command's reply
            if not isinstance(exc, warren_raft.RaftError):
                log.exception("op %s failed", op)
            write_line(
                {
                    "id": req_id,
                    "ok": False,
                    "error": type(exc).__name__,
                    "message": str(exc),
                    "leader_id": getattr(exc, "leader_id", None),
                    "leader_addr": getattr(exc, "leader_addr", None),
                }
            )
            return
        write_line({"id": req_id, "ok": True, "result": result})
        if op == "shutdown":
            exit_now(0)

    # -- ops ------------------------------------------------------------------------------------------

    async def op_ping(self) -> str:
        return "pong"

    async def op_bootstrap(self, members: dict[str, list[str]] | None = None) -> None:
        parsed = None
        if members is not None:
            parsed = {int(node_id): (addr, meta) for node_id, (addr, meta) in members.items()}
        await self.node.bootstrap(parsed)

    async def op_propose(self, data: str) -> dict[str, Any]:
        index, response = await self.node.propose(data.encode("utf-8"))
        return {"index": index, "response": response.decode("utf-8", errors="replace")}

    async def op_propose_many(self, count: int, prefix: str) -> list[int]:
        indexes = []
        for i in range(count):
            index, _ = await self.node.propose(f"{prefix}{i}".encode())
            indexes.append(index)
        return indexes

    async def op_read_barrier(self) -> int:
        return await self.node.read_barrier()

    async def op_metrics(self) -> warren_raft.Metrics:
        return self.node.metrics()

    async def op_state(self) -> list[list[Any]]:
        return [[index, payload.decode("utf-8", errors="replace")] for index, payload in self.sm.entries]

    async def op_add_learner(self, node_id: int, addr: str, meta: str = "", blocking: bool = True) -> int:
        return await self.node.add_learner(node_id, addr, meta, blocking)

    async def op_add_voter(self, node_id: int, addr: str, meta: str = "") -> int:
        return await self.node.add_voter(node_id, addr, meta)

    async def op_change_membership(self, voters: list[int], retain: bool = False) -> int:
        return await self.node.change_membership(voters, retain)

    async def op_remove_node(self, node_id: int) -> int:
        return await self.node.remove_node(node_id)

    async def op_transfer_leadership(self, to: int | None = None, timeout_s: float = 3.0) -> int:
        return await self.node.transfer_leadership(to, timeout_s)

    async def op_trigger_snapshot(self) -> None:
        await self.node.trigger_snapshot()

    async def op_busy(self, seconds: float) -> float:
        # Holds the GIL (and this event loop) on purpose: the Raft core must keep heartbeating without it.
        start = time.perf_counter()
        end = start + seconds
        while time.perf_counter() < end:
            pass
        return time.perf_counter() - start

    async def op_update_tls(self, ca: str, cert: str, key: str, peer_name: str) -> None:
        self.node.update_tls(load_tls(ca, cert, key, peer_name))

    async def op_set_revoked(self, fingerprints: list[str]) -> None:
        """`fingerprints`: hex SHA-256 digests of certificates' DER."""
        self.node.set_revoked([bytes.fromhex(f) for f in fingerprints])

    async def op_bench(self, n: int, concurrency: int = 1, size: int = 64) -> dict[str, Any]:
        payload = b"b" * size
        latencies = [0.0] * n
        next_i = 0

        async def proposer() -> None:
            nonlocal next_i
            while next_i < n:
                i = next_i
                next_i += 1
                t0 = time.perf_counter()
                await self.node.propose(payload)
                latencies[i] = time.perf_counter() - t0

        start = time.perf_counter()
        await asyncio.gather(*(proposer() for _ in range(max(1, min(concurrency, n)))))
        elapsed = time.perf_counter() - start
        return {"latencies_s": latencies, "elapsed_s": elapsed}

    async def op_shutdown(self) -> None:
        await self.node.shutdown()


def load_tls(ca: str, cert: str, key: str, peer_name: str) -> warren_raft.TlsConfig:
    """A TlsConfig from PEM files (paths)."""

    def read(path: str) -> bytes:
        with open(path, "rb") as f:
            return f.read()

    return warren_raft.TlsConfig(ca_pem=read(ca), cert_pem=read(cert), key_pem=read(key), peer_name=peer_name)


async def serve(args: argparse.Namespace) -> int:
    try:
        config = RaftSettings(
            heartbeat_interval_s=args.heartbeat_ms / 1000,
            election_timeout_min_s=args.election_min_ms / 1000,
            election_timeout_max_s=args.election_max_ms / 1000,
            snapshot_threshold=args.snapshot_threshold,
            max_in_snapshot_log_to_keep=args.keep,
        ).to_core()
        tls = None
        if args.tls_ca is not None:
            tls = load_tls(args.tls_ca, args.tls_cert, args.tls_key, args.tls_peer_name)
        node = warren_raft.RaftNode.open(args.data, args.id, args.listen, config=config, tls=tls)
    except BaseException as exc:  # process boundary: report why the node cannot start, then stop
        # BaseException: a Rust panic surfaces as pyo3's PanicException, which is not an Exception.
        if isinstance(exc, KeyboardInterrupt | SystemExit):
            raise
        log.error("cannot open node %d in %s: %s: %s", args.id, args.data, type(exc).__name__, exc)
        write_line({"fatal": type(exc).__name__, "message": str(exc)})
        return EXIT_OPEN_FAILED

    sm = ListStateMachine()
    server = Server(node, sm)
    driver = asyncio.create_task(drive(node, sm))

    def on_driver_done(task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            log.error("state machine stopped: %s: %s", type(exc).__name__, exc)
            write_line({"fatal": type(exc).__name__, "message": str(exc)})
            exit_now(EXIT_STATE_MACHINE_FAILED)

    driver.add_done_callback(on_driver_done)

    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=16 * 1024 * 1024)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    write_line({"event": "ready", "id": args.id, "addr": node.addr, "pid": os.getpid()})
    log.info("node %d ready on %s (data %s)", args.id, node.addr, args.data)

    while True:
        line = await reader.readline()
        if not line:
            break
        text = line.decode("utf-8").strip()
        if text:
            server.submit(text)

    # stdin closed: whoever drove us is gone, so leave cleanly rather than linger as an orphan.
    log.info("stdin closed; shutting down node %d", args.id)
    await node.shutdown()
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    defaults = RaftSettings().to_core()
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--id", type=int, required=True)
    p.add_argument("--listen", required=True, help="host:port to serve Raft on (also advertised)")
    p.add_argument("--data", required=True, help="data directory (created if missing)")
    p.add_argument("--heartbeat-ms", type=int, default=defaults.heartbeat_interval_ms)
    p.add_argument("--election-min-ms", type=int, default=defaults.election_timeout_min_ms)
    p.add_argument("--election-max-ms", type=int, default=defaults.election_timeout_max_ms)
    p.add_argument("--snapshot-threshold", type=int, default=defaults.snapshot_threshold)
    p.add_argument("--keep", type=int, default=defaults.max_in_snapshot_log_to_keep)
    p.add_argument("--log-level", default="info")
    tls = p.add_argument_group("mutual TLS on the Raft transport (all four, or none for plain TCP)")
    tls.add_argument("--tls-ca", help="PEM file of the CA certificate(s) peers must chain to")
    tls.add_argument("--tls-cert", help="PEM file of this node's certificate (then any intermediates)")
    tls.add_argument("--tls-key", help="PEM file of this node's private key")
    tls.add_argument("--tls-peer-name", help="DNS name every node's certificate must be valid for")
    args = p.parse_args(argv)
    given = [args.tls_ca, args.tls_cert, args.tls_key, args.tls_peer_name]
    if any(v is not None for v in given) and None in given:
        p.error("--tls-ca, --tls-cert, --tls-key and --tls-peer-name go together")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(
        stream=sys.stderr,
        level=args.log_level.upper(),
        format=f"%(asctime)s node{args.id} %(levelname)s %(name)s: %(message)s",
    )
    warren_raft.init_logging(args.log_level)
    os.makedirs(args.data, exist_ok=True)
    exit_now(asyncio.run(serve(args)))


if __name__ == "__main__":
    main()
