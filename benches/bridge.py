"""Scenario `bridge`: the state machine's apply loop, compiled bridge against pure bridge (issue 18).

No cluster: a real `Store` (SQLite, WAL, in a temp dir) is fed committed batches directly, as `drive`
feeds them from the Raft core. Two stores start from the same state (a cluster, two workers, a service
and its `tasks` tasks); one applies through the compiled entry loop (`warren._raft`), the other through
the pure one (`warren._raft_py`, the same source). Both get the same batches, rounds interleaved so
that the machine's noise falls on both alike.

A batch is `batch` entries of a mix that a busy leader commits (payloads made by
warren.store.commands.encode): task.status batches of `status_updates` updates (the dispatcher's
merged flush), single task.status updates, and service updates (scale, a label). Every round is
valid again on the state the previous one left (running -> running moves only the message, a service
update sets a new replica count), so each round applies, never only refuses.

Rows: `bridge/apply/<impl>`, Store.apply per batch (p50 of the rounds; throughput and ns per entry
from it); `bridge/loop/<impl>`, the entry loop alone (savepoint, a step that returns at once,
release: what compiling can speed up at all). The breakdown (results.breakdown) is a cProfile run of
the pure path, its own time grouped into decode (orjson + msgspec), SQL (every `execute`, savepoints
included) and the rest, plus the savepoint pair and decode timed on their own.
"""

from __future__ import annotations

import cProfile
import pstats
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from warren import _raft_py
from warren.pki import tokens
from warren.spec.service import ServiceSpec, TaskSpec, spec_digest
from warren.spec.service import decode as decode_spec
from warren.store import commands as c
from warren.store.machine import EntryLoop, Store

T0 = 1_800_000_000.0
NODES = ("bench-w1", "bench-w2")
TOKEN = "SWMTKN-1-" + "b" * 50
SPEC: dict[str, Any] = {"image": "warren-busybox:latest", "driver": "docker", "command": ["httpd", "-f"]}
SERVICE = "web"
EVENT = "Store.apply(batch) called → responses returned (one SQLite transaction, a savepoint per entry)"
LOOP_EVENT = "apply_entries over the batch with a step that returns at once (savepoint + release only)"


@dataclass(frozen=True, slots=True)
class BridgeParams:
    tasks: int = 400  # tasks of the service the status updates move; tasks
    batch: int = 64  # entries per committed batch (the core's max_payload_entries); entries
    status_updates: int = 20  # updates in one merged task.status command; updates
    rounds: int = 60  # batches applied per implementation (the raw samples); batches
    warmup: int = 5  # batches applied per implementation before timing; batches
    profile_rounds: int = 20  # batches of the pure path run under cProfile for the breakdown; batches

    @classmethod
    def smoke(cls) -> BridgeParams:
        return cls(tasks=40, batch=16, rounds=5, warmup=1, profile_rounds=2)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _store(path: Path, loop: EntryLoop, params: BridgeParams) -> tuple[Store, int]:
    """A store at `path` with the cluster the batches work on; its next free log index."""
    store = Store(str(path), entry_loop=loop)
    store.restore(None)
    spec = decode_spec(ServiceSpec, {**SPEC, "replicas": params.tasks})
    task_spec: TaskSpec = spec.task_spec()
    digest = spec_digest(spec)
    setup: list[c.Command] = [
        c.InitCluster("bench-cluster", T0, c.ManagerRecord("bench-m1", 1, "127.0.0.1:1", "127.0.0.1:2")),
        c.CreateToken("tw", "worker", tokens.digest(TOKEN), T0, T0 + 1e6, False),
        *(
            c.RegisterWorker(n, tokens.digest(TOKEN), f"s-{n}", "127.0.0.5", {}, {"cpus": 2.0}, T0)
            for n in NODES
        ),
        c.CreateService("svc-1", SERVICE, spec, T0),
        c.CreateTasks(
            [
                c.NewTask(_task(i), "svc-1", i + 1, _node(i), "assigned", "", task_spec, digest)
                for i in range(params.tasks)
            ],
            T0,
        ),
        c.SetTaskStatuses([c.TaskStatus(_task(i), "running", "up", T0) for i in range(params.tasks)]),
    ]
    answers = store.apply([(i + 1, 1, c.encode(cmd)) for i, cmd in enumerate(setup)])
    refused = [a for a in answers if not a.startswith(b'{"ok"')]
    if refused:
        raise RuntimeError(f"bench state refused: {refused[:3]!r}")
    return store, len(setup) + 1


def _task(i: int) -> str:
    return f"task-{i:05d}"


def _node(i: int) -> str:
    return NODES[i % len(NODES)]


def payloads(params: BridgeParams, round_: int) -> list[bytes]:
    """One batch: 6 in 8 merged status batches, 1 in 8 single status updates, 1 in 8 service updates."""
    out: list[bytes] = []
    at = T0 + 10 + round_
    for k in range(params.batch):
        kind = k % 8
        if kind == 7:
            changes = {"replicas": params.tasks + (round_ + k) % 3, "labels": {"round": str(round_)}}
            out.append(c.encode(c.UpdateService(SERVICE, changes, at)))
            continue
        n = 1 if kind == 6 else params.status_updates
        first = (round_ * params.batch + k) * n
        updates = [
            c.TaskStatus(
                _task(j % params.tasks), "running", f"healthy r{round_}", at, node=_node(j % params.tasks)
            )
            for j in range(first, first + n)
        ]
        out.append(c.encode(c.SetTaskStatuses(updates)))
    return out


def _stats(samples_ms: list[float], batch: int) -> dict[str, Any]:
    p50 = statistics.median(samples_ms)
    return {
        "trials": len(samples_ms),
        "p50_ms": round(p50, 4),
        "max_ms": round(max(samples_ms), 4),
        "throughput_per_s": round(batch / (p50 / 1000)),
        "ns_per_entry": round(p50 * 1e6 / batch),
        "samples_ms": [round(s, 4) for s in samples_ms],
    }


def _time_apply(stores: dict[str, tuple[Store, int]], params: BridgeParams) -> dict[str, list[float]]:
    """Per implementation, the wall ms of each timed batch (rounds interleaved between them)."""
    samples: dict[str, list[float]] = {name: [] for name in stores}
    index = {name: start for name, (_, start) in stores.items()}
    for r in range(params.warmup + params.rounds):
        batch = payloads(params, r)
        for name, (store, _) in stores.items():
            entries = [(index[name] + i, 2, p) for i, p in enumerate(batch)]
            index[name] += len(entries)
            t0 = time.perf_counter()
            responses = store.apply(entries)
            elapsed = (time.perf_counter() - t0) * 1000
            if r == params.warmup:  # every implementation gives the same answers (checked once)
                bad = [a for a in responses if not a.startswith(b'{"ok"')]
                if bad:
                    raise RuntimeError(f"{name}: refused in the bench batch: {bad[:2]!r}")
            if r >= params.warmup:
                samples[name].append(elapsed)
    return samples


def _time_loop(loops: dict[str, EntryLoop], store: Store, params: BridgeParams) -> dict[str, list[float]]:
    """The entry loop alone: savepoints and the response list, with a step that does nothing."""
    batch = payloads(params, 0)
    entries = [(i + 1, 2, p) for i, p in enumerate(batch)]
    reply = b'{"ok":null}'

    def step(index: int, payload: bytes) -> bytes:
        return reply

    def refusal(exc: Exception, index: int) -> bytes | None:
        return None

    samples: dict[str, list[float]] = {name: [] for name in loops}
    conn = store.conn
    conn.execute("BEGIN IMMEDIATE")
    try:
        for r in range(params.warmup + params.rounds):
            for name, loop in loops.items():
                t0 = time.perf_counter()
                loop(conn, entries, step, refusal)
                elapsed = (time.perf_counter() - t0) * 1000
                if r >= params.warmup:
                    samples[name].append(elapsed)
    finally:
        conn.execute("ROLLBACK")
    return samples


# cProfile's own-time entries, by what they are: (category, test on (file, function name)).
CATEGORIES: tuple[tuple[str, Callable[[str, str], bool]], ...] = (
    ("sql", lambda f, n: "sqlite3.Connection" in n or "sqlite3.Cursor" in n),
    ("decode", lambda f, n: "orjson.loads" in n or "msgspec" in n or f.endswith("commands.py")),
    ("encode responses", lambda f, n: "orjson.dumps" in n),
    ("entry loop", lambda f, n: f.endswith("_raft_py.py") or f.endswith("machine.py")),
)


def breakdown(store: Store, start: int, params: BridgeParams) -> dict[str, Any]:
    """Where the pure path's time goes: cProfile's own time per category, in % and ns per entry."""
    profiler = cProfile.Profile()
    index = start
    entries_done = 0
    for r in range(params.profile_rounds):
        batch = payloads(params, 10_000 + r)
        entries = [(index + i, 2, p) for i, p in enumerate(batch)]
        index += len(entries)
        profiler.enable()
        store.apply(entries)
        profiler.disable()
        entries_done += len(entries)
    stats = pstats.Stats(profiler)
    own: dict[str, float] = {}
    raw: dict[tuple[str, int, str], tuple[int, int, float, float, Any]] = stats.stats  # type: ignore[attr-defined]
    for (file, _line, name), (_cc, _nc, tottime, _ct, _callers) in raw.items():
        category = next((cat for cat, test in CATEGORIES if test(file, name)), "handlers and other Python")
        own[category] = own.get(category, 0.0) + tottime
    total = sum(own.values()) or 1.0
    return {
        "method": "cProfile of the pure path (its overhead inflates Python calls), own time per category",
        "entries": entries_done,
        "share_pct": {k: round(100 * v / total, 1) for k, v in sorted(own.items(), key=lambda kv: -kv[1])},
        "ns_per_entry": {k: round(v * 1e9 / entries_done) for k, v in own.items()},
    }


def component_ns(store: Store, params: BridgeParams) -> dict[str, float]:
    """The pieces timed on their own, per entry of the batch mix: decode, a savepoint + release."""
    batch = payloads(params, 20_000)
    n = max(params.rounds, 3)
    t0 = time.perf_counter()
    for _ in range(n):
        for p in batch:
            c.decode(p)
    decode_ns = (time.perf_counter() - t0) * 1e9 / (n * len(batch))
    conn = store.conn
    conn.execute("BEGIN IMMEDIATE")
    try:
        t0 = time.perf_counter()
        for _ in range(n * len(batch)):
            conn.execute("SAVEPOINT cmd")
            conn.execute("RELEASE cmd")
        savepoint_ns = (time.perf_counter() - t0) * 1e9 / (n * len(batch))
    finally:
        conn.execute("ROLLBACK")
    return {"decode": round(decode_ns), "savepoint_release": round(savepoint_ns)}


def _compiled() -> tuple[EntryLoop | None, str | None]:
    """The compiled entry loop, or why there is none."""
    try:
        from warren import _raft
    except ImportError as exc:
        return None, f"warren._raft not importable ({exc}): build it with make install"
    if not _raft.COMPILED:
        return None, "warren._raft is the pure source (not compiled): build it with make install"
    return _raft.apply_entries, None


def run(base_dir: Path, params: BridgeParams) -> dict[str, Any]:
    base_dir.mkdir(parents=True, exist_ok=True)
    compiled, missing = _compiled()
    loops: dict[str, EntryLoop] = {"python": _raft_py.apply_entries}
    if compiled is not None:
        loops["cython"] = compiled
    stores: dict[str, tuple[Store, int]] = {}
    try:
        for name, loop in loops.items():
            (base_dir / name).mkdir(exist_ok=True)
            stores[name] = _store(base_dir / name, loop, params)
        apply_ms = _time_apply(stores, params)
        loop_ms = _time_loop(loops, stores["python"][0], params)
        pure, pure_next = stores["python"]
        parts = component_ns(pure, params)
        profile = breakdown(pure, pure_next + (params.warmup + params.rounds) * params.batch, params)
    finally:
        for store, _ in stores.values():
            store.close()

    mix = (
        f"{params.batch}-entry batches: 3/4 task.status ×{params.status_updates}, 1/8 ×1, 1/8 service.update"
    )
    rows: list[dict[str, Any]] = []
    for name in ("python", "cython"):
        if name not in loops:
            for kind in ("apply", "loop"):
                rows.append(_row(f"bridge/{kind}/{name}", f"{name} bridge", EVENT, skipped=missing))
            continue
        rows.append(
            _row(
                f"bridge/apply/{name}",
                f"{name} bridge, Store.apply, {mix}",
                EVENT,
                **_stats(apply_ms[name], params.batch),
            )
        )
        rows.append(
            _row(
                f"bridge/loop/{name}",
                f"{name} bridge, entry loop alone, {params.batch} entries",
                LOOP_EVENT,
                **_stats(loop_ms[name], params.batch),
            )
        )
    speedup: dict[str, float] = {}
    if "cython" in loops:
        for kind, samples in (("apply", apply_ms), ("loop", loop_ms)):
            speedup[kind] = round(
                statistics.median(samples["python"]) / statistics.median(samples["cython"]), 3
            )
    results = {"speedup_compiled_over_pure": speedup, "components_ns": parts, "breakdown": profile}
    return {"status": "ok", "error": None, "config": params.as_dict(), "results": results, "rows": rows}


def _row(key: str, what: str, event: str, **values: Any) -> dict[str, Any]:
    return {"scenario": "bridge", "key": key, "what": what, "event": event, **values}
