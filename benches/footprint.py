"""Scenario `footprint`: what Warren costs an edge box at rest (issue 14): idle memory and CPU of a
manager and a worker, and the installed size of Warren with its dependencies.

Three managers (`--manager-only`, default timers) and one worker (the Docker runtime when an engine
answers, the process runtime otherwise) run a 2-replica service. Then nothing happens for `idle_s`
(60 s in the full profile): no client call, only the cluster's own traffic (Raft heartbeats every
50 ms, worker heartbeats every second). Over that window each daemon's CPU time (utime + stime of the
whole process, every thread, from /proc/<pid>/stat; task processes and containers are the workload,
not Warren) is read every `slice_s`; right after it, each daemon's resident set (VmRSS from
/proc/<pid>/status, with its anonymous and file-backed parts) is sampled `samples` times. The rows
give the largest manager (leader or follower) and the worker.

Installed size: every distribution warren-orchestrator needs at run time (its requirements, followed
transitively, no extras), measured as the files each one's RECORD lists, in a fresh venv where
`pip install` put the wheels of dist/ (when `make wheels` built them and `fresh_venv` is on), else in
the venv running the benchmark (where warren-orchestrator itself is an editable install: its size is
then its package's files).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from benches.workers_bench import fleet
from tests.integration.workers import docker_unavailable_reason
from warren.testing.process import Daemon

REPO_ROOT = Path(__file__).resolve().parents[1]
DIST_DIR = REPO_ROOT / "dist"
CLK_TCK = os.sysconf("SC_CLK_TCK")
ROOT_DIST = "warren-orchestrator"
MIB = 1024 * 1024

RSS_EVENT = "VmRSS of the daemon process after {idle:g} s idle (largest of {n} samples, {interval:g} s apart)"
CPU_EVENT = "CPU time (user + system, all threads) over {idle:g} s idle, in % of one core"


@dataclass(frozen=True, slots=True)
class FootprintParams:
    managers: int = 3  # cluster size; managers
    replicas: int = 2  # tasks of the idle service; replicas
    idle_s: float = 60.0  # the idle window CPU is measured over, before RSS is sampled; seconds
    slice_s: float = 10.0  # CPU time is read this often within the window (the raw samples); seconds
    samples: int = 10  # RSS readings per daemon; samples
    interval_s: float = 1.0  # between RSS readings; seconds
    fresh_venv: bool = True  # measure the installed size in a new venv from dist/'s wheels if present
    runtime: str = "auto"  # the worker's: docker when an engine answers, else process; or either

    @classmethod
    def smoke(cls) -> FootprintParams:
        return cls(managers=1, idle_s=2.0, slice_s=1.0, samples=2, interval_s=0.5, fresh_venv=False)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# -- /proc --------------------------------------------------------------------------------------------


def memory_mb(pid: int) -> dict[str, float]:
    """VmRSS and its parts (RssAnon, RssFile, RssShmem) of `pid`, in MiB."""
    out: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in ("VmRSS", "RssAnon", "RssFile", "RssShmem"):
            out[name] = int(rest.split()[0]) / 1024
    if "VmRSS" not in out:
        raise ProcessLookupError(f"no VmRSS for pid {pid}")
    return out


def rss_mb(pid: int) -> float:
    """The resident set of `pid` in MiB (VmRSS: anonymous, file-backed and shared pages it maps)."""
    return memory_mb(pid)["VmRSS"]


def cpu_s(pid: int) -> float:
    """CPU seconds `pid` used so far, user + system, all its threads (not its children)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) ": field 3 onwards
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime (fields 14 and 15)


# -- installed size -----------------------------------------------------------------------------------


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirements(dist: metadata.Distribution) -> list[str]:
    """The names `dist` needs at run time: its Requires-Dist without extras, markers evaluated here."""
    from packaging.requirements import Requirement

    names = []
    for text in dist.requires or []:
        req = Requirement(text)
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        names.append(_norm(req.name))
    return names


def _dist_bytes(dist: metadata.Distribution) -> int:
    total = 0
    for f in dist.files or []:
        path = Path(str(dist.locate_file(f)))
        if path.is_file():
            total += path.stat().st_size
    return total


def installed_sizes(site_packages: list[str] | None) -> dict[str, int]:
    """Bytes on disk of warren-orchestrator and every distribution it needs (transitively), from the
    RECORD files in `site_packages` (None: this interpreter's path). An editable install of Warren
    is counted as its package's files."""
    found = {_norm(d.metadata["Name"]): d for d in metadata.distributions(path=site_packages or sys.path)}
    sizes: dict[str, int] = {}
    todo = [ROOT_DIST]
    while todo:
        name = todo.pop()
        if name in sizes or name not in found:
            continue
        dist = found[name]
        size = _dist_bytes(dist)
        if name == ROOT_DIST and size < MIB:  # editable: RECORD lists the finder, not the package
            package = REPO_ROOT / "warren"
            size = sum(
                p.stat().st_size for p in package.rglob("*") if p.is_file() and "__pycache__" not in p.parts
            )
        sizes[name] = size
        todo += _requirements(dist)
    return dict(sorted(sizes.items(), key=lambda kv: -kv[1]))


def _wheels() -> list[Path]:
    """dist/'s wheels for this machine: warren-orchestrator's and warren-raft's (newest each)."""
    machine = os.uname().machine
    chosen = []
    for stem in ("warren_orchestrator-", "warren_raft-"):
        found = sorted(
            (p for p in DIST_DIR.glob(f"{stem}*.whl") if "none-any" in p.name or machine in p.name),
            key=lambda p: p.stat().st_mtime,
        )
        if found:
            chosen.append(found[-1])
    return chosen if len(chosen) == 2 else []


def measure_installed(work_dir: Path, fresh_venv: bool) -> dict[str, Any]:
    """Per-distribution installed size: a fresh venv from dist/'s wheels when there are any (and
    `fresh_venv`), else this venv."""
    wheels = _wheels() if fresh_venv else []
    if wheels:
        venv = work_dir / "size-venv"
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
        py = venv / "bin" / "python"
        subprocess.run(
            [str(py), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *map(str, wheels)],
            check=True,
            timeout=600,
            capture_output=True,
        )
        site = subprocess.run(
            [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        where = f"fresh venv, pip install {' '.join(w.name for w in wheels)}"
        sizes = installed_sizes([site])
    else:
        where = "this venv (no wheels in dist/, or --smoke): warren-orchestrator counted as its package files"
        sizes = installed_sizes(None)
    return {"where": where, "bytes": sizes, "wheel_bytes": {w.name: w.stat().st_size for w in wheels}}


# -- the scenario -------------------------------------------------------------------------------------


def run(base_dir: Path, params: FootprintParams) -> dict[str, Any]:
    runtime = params.runtime
    if runtime == "auto":
        runtime = "process" if docker_unavailable_reason() else "docker"
    with fleet(base_dir / "footprint", managers=params.managers) as f:
        worker = f.add_worker(runtime)
        if runtime == "docker":
            spec: dict[str, Any] = {"image": "warren-busybox:latest", "command": ["sleep", "1000000"]}
        else:
            spec = {"image": "local", "driver": "process", "command": ["sleep", "1000000"]}
        f.create("idle", replicas=params.replicas, stop_timeout_s=1, **spec)
        f.wait_running("idle", params.replicas)
        daemons: list[Daemon] = [*f.managers.live(), worker]
        pids: dict[str, int] = {}
        for d in daemons:
            assert d.pid is not None
            pids[d.label] = d.pid
        # The idle window: time passing is the measured condition, so it is slept, not awaited.
        cpu_slices: dict[str, list[float]] = {label: [] for label in pids}
        start = {label: cpu_s(pid) for label, pid in pids.items()}
        t0 = last_t = time.monotonic()
        last = dict(start)
        while (left := params.idle_s - (time.monotonic() - t0)) > 0:
            time.sleep(min(params.slice_s, left))
            now_t = time.monotonic()
            for label, pid in pids.items():
                now = cpu_s(pid)
                cpu_slices[label].append(round((now - last[label]) * 1000, 1))  # CPU ms in this slice
                last[label] = now
            last_t = now_t
        window = last_t - t0
        cpu_pct = {label: 100 * (last[label] - start[label]) / window for label in pids}
        readings: dict[str, list[float]] = {label: [] for label in pids}
        parts: dict[str, dict[str, float]] = {}
        for i in range(params.samples):
            if i:
                time.sleep(params.interval_s)
            for label, pid in pids.items():
                mem = memory_mb(pid)
                readings[label].append(round(mem["VmRSS"], 2))
                parts[label] = {k: round(v, 2) for k, v in mem.items()}
        leader = f.leader.label
    installed = measure_installed(base_dir, params.fresh_venv)

    managers = [label for label in pids if label != worker.label]
    top_rss = max(managers, key=lambda label: max(readings[label]))
    top_cpu = max(managers, key=lambda label: cpu_pct[label])
    n = params.managers
    rss_event = RSS_EVENT.format(idle=params.idle_s, n=params.samples, interval=params.interval_s)
    cpu_event = CPU_EVENT.format(idle=params.idle_s)

    def who(label: str) -> str:
        return f"{label}{', the leader' if label == leader else ''}"

    setup = f"--manager-only, 1 worker, {params.replicas}-replica service"
    rows = [
        _row(
            "rss/manager",
            f"Warren manager, largest of {n} ({who(top_rss)}), {setup}",
            rss_event,
            value_mb=max(readings[top_rss]),
            samples_mb=readings[top_rss],
        ),
        _row(
            "rss/worker",
            f"Warren worker, {runtime} runtime, {params.replicas} tasks",
            rss_event,
            value_mb=max(readings[worker.label]),
            samples_mb=readings[worker.label],
        ),
        _row(
            "cpu/manager",
            f"Warren manager, busiest of {n} ({who(top_cpu)}), {setup}",
            cpu_event,
            value_pct=round(cpu_pct[top_cpu], 3),
            samples_ms=cpu_slices[top_cpu],
            note=f"samples: CPU ms per {params.slice_s:g} s slice",
        ),
        _row(
            "cpu/worker",
            f"Warren worker, {runtime} runtime, {params.replicas} tasks",
            cpu_event,
            value_pct=round(cpu_pct[worker.label], 3),
            samples_ms=cpu_slices[worker.label],
            note=f"samples: CPU ms per {params.slice_s:g} s slice",
        ),
    ]
    sizes = installed["bytes"]
    top = ", ".join(f"{name} {size / MIB:.1f}" for name, size in list(sizes.items())[:6])
    rows.append(
        _row(
            "size/installed",
            f"warren-orchestrator + warren-raft + {len(sizes) - 2} dependencies, on disk (MB: {top}, ...)",
            installed["where"],
            value_mb=round(sum(sizes.values()) / MIB, 2),
            samples_mb=[round(s / MIB, 3) for s in sizes.values()],
        )
    )
    results = {
        "runtime": runtime,
        "leader": leader,
        "rss_mb": readings,
        "memory_mb": parts,
        "cpu_pct": {k: round(v, 3) for k, v in cpu_pct.items()},
        "cpu_ms_per_slice": cpu_slices,
        "idle_window_s": round(window, 2),
        "installed": installed,
    }
    return {"status": "ok", "error": None, "config": params.as_dict(), "results": results, "rows": rows}


def _row(key: str, what: str, event: str, **values: Any) -> dict[str, Any]:
    raw = values.get("samples_mb") or values.get("samples_ms") or []
    return {"scenario": "footprint", "key": key, "what": what, "event": event, "trials": len(raw), **values}


# -- what each import costs: `python -m benches.footprint MODULE ...` -----------------------------------

# The Docker SDK goes in layers (requests' encoding guesser, urllib3, requests, the SDK), so the table
# shows what each costs a worker (docs/decisions.md, "Daemons load cryptography only to make keys").
IMPORT_CHAIN = (
    "asyncio uvloop click httpx warren_raft pydantic fastapi uvicorn prometheus_client cryptography.x509 "
    "cryptography.hazmat.primitives.ciphers.aead warren.config warren.api.app warren.daemons.manager "
    "charset_normalizer urllib3 requests docker warren.runtime.docker"
).split()


_CHAIN_PROBE = """
import importlib, sys, time
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
print(f"{'bare interpreter':45} {rss():6.1f} MB")
for name in sys.argv[1:]:
    before, t0 = rss(), time.perf_counter()
    importlib.import_module(name)
    ms = (time.perf_counter() - t0) * 1000
    print(f"{name:45} +{rss() - before:5.1f} MB {ms:7.1f} ms   total {rss():5.1f} MB")
"""


def import_costs(modules: list[str]) -> str:
    """Import `modules` one after the other into a fresh interpreter: what each adds to VmRSS and how
    long it takes (the table in docs/decisions.md, "Daemons load cryptography only to make keys")."""
    command = [sys.executable, "-c", _CHAIN_PROBE, *modules]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=True)
    return done.stdout


if __name__ == "__main__":
    sys.stdout.write(import_costs(sys.argv[1:] or list(IMPORT_CHAIN)))
