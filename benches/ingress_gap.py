"""The gap in service through the ingress when a replica's node dies (part 4 of benches/networking.py).

Warren, default timers, every node in a network namespace of its own (tests/integration/netns.py): one
manager (host 1), `api` with 2 process replicas on two worker hosts (2, 3; a process ingress replica
occupies its target port, so one per host), published `mode=ingress`, and a client on a third worker
host (4) requesting http://127.0.0.1:P/ (its own worker's ingress) in a loop, every 20 ms, each on a new
connection with a 1 s timeout, logging every result. Per trial one replica's worker is SIGKILLed with
its task processes (a machine crash; the namespace stays, so its port answers with a reset, which the
proxy sees at once) or its host cut off with iptables (connects time out): the longest time between two
successful requests from just before the event is the gap. The victim is brought back before the next
trial.

Docker Swarm on one host has no second node to kill: recorded as not measurable here.
"""

from __future__ import annotations

import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benches.stats import trial_row

PORTS = (8080, 7946, 9090)  # manager API, Raft, metrics inside each namespace
TARGET = 8081  # where an api replica listens on its host
PUBLISHED = 18080  # the ingress port on every worker
EVENT = "replica's node SIGKILLed / cut off → longest time between two successful requests via the ingress"


# argv: LOG DEADLINE_EPOCH. "<epoch> ok <task>" / "<epoch> fail <why>" per request; stops at the deadline.
CLIENT = textwrap.dedent(
    """
    import sys, time, urllib.request
    deadline = float(sys.argv[2])
    with open(sys.argv[1], "a", buffering=1) as out:
        while time.time() < deadline:
            try:
                with urllib.request.urlopen("http://127.0.0.1:PORT/", timeout=1.0) as answer:
                    out.write(f"{time.time():.3f} ok {answer.read().decode()}\\n")
            except Exception as exc:
                out.write(f"{time.time():.3f} fail {type(exc).__name__}\\n")
            time.sleep(0.02)
    """
)


@dataclass(frozen=True, slots=True)
class GapParams:
    trials: int = 3  # per kind of failure
    kinds: tuple[str, ...] = ("sigkill", "cutoff")
    settle_s: float = 3.0  # successful requests wanted after recovery before a trial ends; seconds
    give_up_s: float = 60.0

    @classmethod
    def smoke(cls) -> GapParams:
        return cls(trials=1, kinds=("sigkill",))


def rows(
    base_dir: Path, params: GapParams, unavailable: str | None, results: dict[str, Any]
) -> list[dict[str, Any]]:
    from benches.networking import skipped_row

    swarm = skipped_row(
        "networking/gap/swarm",
        "Docker Swarm: a replica's node killed",
        "not measurable on one host (a single-node swarm has no second node to kill)",
    )
    what = "Warren, 2 process replicas on 2 worker hosts, ingress-published; client on a 3rd host"
    if unavailable is None:
        unavailable = _netns_unavailable()
    if unavailable is not None:
        return [*(skipped_row(f"networking/gap/warren-{k}", what, unavailable) for k in params.kinds), swarm]
    samples = measure(base_dir / "gap", params)
    results["gap"] = samples
    out = []
    for kind in params.kinds:
        ok = [s["seconds"] for s in samples[kind] if s.get("ok")]
        failed = [str(s.get("error")) for s in samples[kind] if not s.get("ok")]
        out.append(
            trial_row("networking", f"networking/gap/warren-{kind}", f"{what}: {kind}", EVENT, ok, failed)
        )
    return [*out, swarm]


def _netns_unavailable() -> str | None:
    from tests.integration.netns import unavailable_reason

    reason = unavailable_reason()
    return None if reason is None else f"needs network namespaces: {reason}"


def measure(base_dir: Path, params: GapParams) -> dict[str, list[dict[str, Any]]]:
    from benches.workers_bench import _post
    from tests.integration.managers import ManagerCluster
    from tests.integration.netns import NetnsLab
    from tests.integration.programs import task_id_server
    from tests.integration.workers import Fleet

    base_dir.mkdir(parents=True, exist_ok=True)
    api_py, client_py, log = base_dir / "api.py", base_dir / "client.py", base_dir / "client.log"
    api_py.write_text(task_id_server(TARGET))
    client_py.write_text(CLIENT.replace("PORT", str(PUBLISHED)))
    samples: dict[str, list[dict[str, Any]]] = {k: [] for k in params.kinds}
    with NetnsLab(4) as lab:
        f = Fleet(ManagerCluster(base_dir, hosts=lab.hosts(PORTS), extra_flags=["--manager-only"]), base_dir)
        client = None
        try:
            f.start_managers(1)
            api_hosts = {
                f.add_worker("process", prefix=lab.prefix(i), labels=["role=api"]).name: i for i in (2, 3)
            }
            f.add_worker("process", prefix=lab.prefix(4), labels=["role=client"])
            spec = {
                "image": "local",
                "driver": "process",
                "command": [sys.executable, str(api_py)],
                "constraints": ["node.labels.role==api"],
                "stop_timeout_s": 1,
                "publish": [{"mode": "ingress", "host": PUBLISHED, "container": TARGET}],
            }
            _post(f.addr, "POST", "/v1/services", {"name": "api", "replicas": 2, **spec})
            f.wait_running("api", 2, timeout=params.give_up_s)
            import subprocess

            deadline = time.time() + params.give_up_s * (1 + len(params.kinds) * params.trials)
            client = subprocess.Popen(
                [*lab.prefix(4), sys.executable, str(client_py), str(log), str(deadline)],
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
            for kind in params.kinds:
                for _ in range(params.trials):
                    samples[kind].append(_trial(f, lab, api_hosts, kind, log, params))
        finally:
            if client is not None and client.poll() is None:
                client.kill()
                client.wait(timeout=10)
            f.close()
            f.managers.close()
    return samples


def _results(log: Path, since: float) -> list[tuple[float, bool]]:
    out = []
    for line in log.read_text().splitlines() if log.exists() else []:
        parts = line.split(" ", 2)
        if len(parts) >= 2 and float(parts[0]) >= since:
            out.append((float(parts[0]), parts[1] == "ok"))
    return out


def _steady(log: Path, since: float, settle_s: float) -> bool:
    """Every request in the last `settle_s` (and there were some) succeeded."""
    rows = _results(log, since)
    recent = [ok for t, ok in rows if t >= time.time() - settle_s]
    return len(recent) >= 10 and all(recent)


def _trial(
    f: Any, lab: Any, api_hosts: dict[str, int], kind: str, log: Path, params: GapParams
) -> dict[str, Any]:
    from warren.testing.wait import WaitTimeout, eventually

    try:
        eventually(
            lambda: _steady(log, 0, params.settle_s), params.give_up_s, "steady requests via the ingress"
        )
    except WaitTimeout:
        return {"ok": False, "error": "requests via the ingress never all succeeded before the trial"}
    victim_node = f.running("api")[0]["node"]
    victim = next(w for w in f.workers if w.name == victim_node)
    t0 = time.time()
    if kind == "sigkill":
        victim.kill()
        victim.kill_tasks()
    else:
        lab.isolate(api_hosts[victim_node])
    try:
        eventually(
            lambda: time.time() - t0 > params.settle_s and _steady(log, t0, params.settle_s),
            params.give_up_s,
            "requests to succeed again",
        )
        oks = [t for t, ok in _results(log, t0 - 1.0) if ok]
        gap = max((b - a for a, b in zip(oks, oks[1:], strict=False)), default=0.0)
        result: dict[str, Any] = {"ok": True, "seconds": gap}
    except WaitTimeout:
        result = {"ok": False, "error": f"requests did not all succeed again within {params.give_up_s:g} s"}
    if kind == "sigkill":
        victim.start()
        victim.wait_ready(f.addr)
    else:
        lab.heal(api_hosts[victim_node])
    f.wait_running("api", 2, timeout=params.give_up_s)
    return result
