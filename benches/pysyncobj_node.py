"""One PySyncObj member as a process, driven by the same JSON-line protocol as tests.integration.raftnode.

Run as `python -m benches.pysyncobj_node --id N --listen HOST:PORT --peers HOST:PORT,... --data DIR
[--batch]`. The replicated object is a counter whose `append(payload)` bumps it and returns the new
value: the PySyncObj twin of raftnode's list state machine. Ops: ping, status, bench, shutdown.
Commands run in their own threads, so `status` answers while a bench runs. Logs go to stderr.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import threading
import time
from typing import Any

from pysyncobj import (  # type: ignore[import-untyped]
    FAIL_REASON,
    SyncObj,
    SyncObjConf,
    SyncObjException,
    replicated,
)

log = logging.getLogger("benches.pysyncobj_node")

LEADER_STATE = 2  # pysyncobj's _RAFT_STATE.LEADER
_out_lock = threading.Lock()


def write_line(obj: dict[str, Any]) -> None:
    with _out_lock:
        sys.stdout.write(json.dumps(obj, separators=(",", ":")) + "\n")
        sys.stdout.flush()


def exit_now(code: int) -> None:
    with _out_lock:
        sys.stdout.flush()
    logging.shutdown()
    os._exit(code)


class Counter(SyncObj):  # type: ignore[misc]
    def __init__(self, self_addr: str, partners: list[str], conf: SyncObjConf) -> None:
        super().__init__(self_addr, partners, conf)
        self._count = 0

    @replicated  # type: ignore[untyped-decorator]
    def append(self, payload: bytes) -> int:
        self._count += 1
        return self._count


def op_status(obj: Counter) -> dict[str, Any]:
    st = obj.getStatus()
    leader = st.get("leader")
    return {
        "self": str(st.get("self")),
        "leader": str(leader) if leader is not None else None,
        "is_leader": st.get("state") == LEADER_STATE,
        "term": st.get("raft_term"),
        "commit_index": st.get("commit_idx"),
        "applied_index": st.get("last_applied"),
        "has_quorum": st.get("has_quorum"),
        "ready": obj.isReady(),
    }


def op_bench(obj: Counter, n: int, concurrency: int = 1, size: int = 64) -> dict[str, Any]:
    payload = b"b" * size
    latencies: list[float] = []
    errors: dict[str, int] = {}

    def failed(reason: object) -> None:
        key = str(reason)
        errors[key] = errors.get(key, 0) + 1

    start = time.perf_counter()
    if concurrency <= 1:
        for _ in range(n):
            t0 = time.perf_counter()
            try:
                obj.append(payload, sync=True, timeout=10)
            except SyncObjException as exc:
                failed(exc.errorCode)
                continue
            latencies.append(time.perf_counter() - t0)
    else:
        # Pipelined: keep `concurrency` commands in flight, completions arrive on PySyncObj's tick thread.
        slots = threading.Semaphore(concurrency)
        all_done = threading.Event()
        lock = threading.Lock()
        remaining = n

        def on_result(t0: float, _result: object, err: int) -> None:
            nonlocal remaining
            now = time.perf_counter()
            with lock:
                if err == FAIL_REASON.SUCCESS:
                    latencies.append(now - t0)
                else:
                    failed(err)
                remaining -= 1
                if remaining == 0:
                    all_done.set()
            slots.release()

        for _ in range(n):
            slots.acquire()
            t0 = time.perf_counter()
            obj.append(payload, callback=lambda res, err, t0=t0: on_result(t0, res, err))
        all_done.wait(600)
    elapsed = time.perf_counter() - start
    return {"latencies_s": latencies, "elapsed_s": elapsed, "errors": errors}


def handle(obj: Counter, line: str) -> None:
    try:
        cmd = json.loads(line)
        req_id = cmd.pop("id")
        op = cmd.pop("op")
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        write_line({"id": None, "ok": False, "error": "BadCommand", "message": str(exc)})
        return
    try:
        if op == "ping":
            result: Any = "pong"
        elif op == "status":
            result = op_status(obj)
        elif op == "bench":
            result = op_bench(obj, **cmd)
        elif op == "shutdown":
            obj.destroy()
            write_line({"id": req_id, "ok": True, "result": None})
            exit_now(0)
        else:
            raise ValueError(f"unknown op {op!r}")
    except Exception as exc:  # thread boundary: every failure becomes the command's reply
        log.exception("op %s failed", op)
        write_line({"id": req_id, "ok": False, "error": type(exc).__name__, "message": str(exc)})
        return
    write_line({"id": req_id, "ok": True, "result": result})


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="PySyncObj member driven by JSON lines")
    p.add_argument("--id", type=int, required=True)
    p.add_argument("--listen", required=True)
    p.add_argument("--peers", default="", help="comma-separated host:port of the other members")
    p.add_argument("--data", required=True)
    p.add_argument("--batch", action="store_true", help="appendEntriesUseBatch (throughput over latency)")
    args = p.parse_args(argv)
    fmt = f"%(asctime)s node{args.id} %(levelname)s %(name)s: %(message)s"
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format=fmt)
    os.makedirs(args.data, exist_ok=True)
    conf = SyncObjConf(
        journalFile=os.path.join(args.data, "journal.bin"),
        fullDumpFile=os.path.join(args.data, "dump.bin"),
        appendEntriesUseBatch=args.batch,
        commandsQueueSize=1_000_000,
    )
    try:
        obj = Counter(args.listen, [peer for peer in args.peers.split(",") if peer], conf)
        obj.waitBinded()
    except Exception as exc:  # process boundary: report why the node cannot start, then stop
        write_line({"fatal": type(exc).__name__, "message": str(exc)})
        exit_now(3)
    write_line({"event": "ready", "id": args.id, "addr": args.listen, "pid": os.getpid()})
    for raw in sys.stdin:
        text = raw.strip()
        if text:
            threading.Thread(target=handle, args=(obj, text), daemon=True).start()
    obj.destroy()
    exit_now(0)


if __name__ == "__main__":
    main()
