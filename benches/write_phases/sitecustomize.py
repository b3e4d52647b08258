"""Timestamps inside a Warren manager without changing its code (benches/write_profile.py --phases).

`site` imports this module at start-up when this directory is on PYTHONPATH; it does nothing unless
WRITEPROF_OUT is set. Once Warren's modules are imported it wraps LeaderRouting.__call__,
Services.update, Consensus.propose, Store.apply and Orchestrator.run_pass, and appends one JSON line
per PATCH request to WRITEPROF_OUT.<pid>: when each phase began and ended, in microseconds from the
request's entry into the ASGI stack. Sequential writes only (one record at a time).
"""

import builtins
import json
import os
import sys
import time

OUT = os.environ.get("WRITEPROF_OUT")
_MODULES = (
    ("warren.api.routing", "LeaderRouting"),
    ("warren.manager.control.services", "Services"),
    ("warren.manager.consensus", "Consensus"),
    ("warren.store.machine", "Store"),
    ("warren.manager.orchestrator", "Orchestrator"),
)


def _install() -> None:
    from warren.api import routing
    from warren.manager import consensus, orchestrator
    from warren.manager.control import services
    from warren.store import machine

    pc = time.perf_counter
    rec: dict[str, float] = {}
    lines: list[str] = []

    def flush() -> None:
        with open(f"{OUT}.{os.getpid()}", "a") as f:
            f.write("".join(lines))
        lines.clear()

    orig_call = routing.LeaderRouting.__call__

    async def call(self, scope, receive, send):  # type: ignore[no-untyped-def]
        if scope.get("method") != "PATCH":
            return await orig_call(self, scope, receive, send)
        rec.clear()
        rec["req0"] = pc()

        async def timed_send(msg):  # type: ignore[no-untyped-def]
            if msg["type"] == "http.response.start":
                rec["resp_start"] = pc()
            await send(msg)
            if msg["type"] == "http.response.body" and not msg.get("more_body"):
                rec["resp_sent"] = pc()

        try:
            return await orig_call(self, scope, receive, timed_send)
        finally:
            rec["req1"] = pc()
            lines.append(json.dumps({k: round((v - rec["req0"]) * 1e6) for k, v in rec.items()}) + "\n")
            if len(lines) >= 500:
                flush()

    def span(cls, name, start, end, when=lambda *a: True):  # type: ignore[no-untyped-def]
        orig = getattr(cls, name)

        async def wrapped(self, *a, **k):  # type: ignore[no-untyped-def]
            mine = "req0" in rec and start not in rec and when(*a)
            if mine:
                rec[start] = pc()
            try:
                return await orig(self, *a, **k)
            finally:
                if mine:
                    rec[end] = pc()

        setattr(cls, name, wrapped)

    routing.LeaderRouting.__call__ = call
    span(services.Services, "update", "handler0", "handler1")
    is_update = lambda cmd: type(cmd).__name__ == "UpdateService"  # noqa: E731
    span(consensus.Consensus, "propose", "propose0", "propose1", is_update)
    span(orchestrator.Orchestrator, "run_pass", "pass0", "pass1")
    orig_apply = machine.Store.apply

    def apply(self, entries):  # type: ignore[no-untyped-def]
        t0 = pc()
        try:
            return orig_apply(self, entries)
        finally:
            if "propose0" in rec and "apply0" not in rec:
                rec["apply0"], rec["apply1"] = t0, pc()

    machine.Store.apply = apply


if OUT:
    _import = builtins.__import__
    _done = False

    def _hook(name, *args, **kwargs):  # type: ignore[no-untyped-def]
        global _done
        module = _import(name, *args, **kwargs)
        if not _done and all(hasattr(sys.modules.get(m), c) for m, c in _MODULES):
            _done = True
            builtins.__import__ = _import
            _install()
        return module

    builtins.__import__ = _hook
