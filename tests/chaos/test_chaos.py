"""Chaos: faults one after another on a live cluster under load, then machine-checked invariants.

`make test` runs a bounded smoke (every fault kind at least once, about two minutes); `make chaos` runs
the same test for WARREN_CHAOS_SECONDS (30 minutes) and writes its report into benches/results/.
Settings, all from the environment: WARREN_CHAOS_SECONDS, WARREN_CHAOS_MANAGERS (5),
WARREN_CHAOS_SEED (random, printed: rerun with it to replay the same choices), WARREN_CHAOS_REPORT
(a directory; default the test's tmp dir).
"""

from __future__ import annotations

import contextlib
import os
import random
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.chaos import invariants, report
from tests.chaos.nemesis import KINDS, Nemesis, small_disk
from tests.chaos.registers import Registers
from tests.chaos.tasks import ChaosWorker, DuplicateWatch
from tests.chaos.writes import ConfigWriter, lost_writes
from tests.integration.managers import (
    ManagerCluster,
    ManagerProc,
    api,
    credentials,
    get_json,
    manager_clusters,
)
from tests.integration.netns import NetnsLab, unavailable_reason
from tests.integration.workers import WorkerProc
from warren.testing.wait import eventually

PORTS = (8080, 7946, 9090)  # each manager has a namespace (and an address) of its own
SMOKE_SECONDS = 100.0
WORKERS = 2  # process-runtime workers, in namespaces after the managers'
REPLICAS = 4


def service_name() -> str:
    """The sleeping service's name, new in each run: the duplicate watch finds its tasks by this name in
    every process's environment, so a task another run left behind (a run killed before it could clean
    up) is not taken for a second task in a slot of this one."""
    return f"chaos-sleep-{random.SystemRandom().randrange(1 << 24):06x}"


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    return int(value) if value.strip() else default


@pytest.fixture
def lab(request: pytest.FixtureRequest) -> Iterator[NetnsLab]:
    reason = unavailable_reason()
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"CI must be able to make network namespaces: {reason}")
        pytest.skip(f"needs network namespaces: {reason}")
    with NetnsLab(_env_int("WARREN_CHAOS_MANAGERS", 5) + WORKERS) as lab:
        yield lab
    assert not lab.leftovers(), f"the lab left things behind: {lab.leftovers()}"


def form(cluster: ManagerCluster, n: int, stack: contextlib.ExitStack) -> None:
    """init + joins; the last manager's Raft directory is a small tmpfs (the full-disk fault's)."""
    first = cluster.init()
    for i in range(2, n + 1):
        m = cluster.new_manager()
        if i == n and os.geteuid() == 0:
            stack.enter_context(small_disk(m.data_dir / "raft"))
        m.join(cluster.join_token(first), first.api_addr)


def start_workers(cluster: ManagerCluster, lab: NetnsLab, base_dir: Path) -> list[ChaosWorker]:
    first = cluster.managers[0]
    workers = []
    for i in range(WORKERS):
        host = len(cluster.managers) + 1 + i
        w = WorkerProc(f"w{i + 1}", base_dir, [m.api_addr for m in cluster.managers], prefix=lab.prefix(host))
        workers.append(ChaosWorker(w, lab, host))
        w.start(cluster.join_token(first, "worker"))
        w.wait_ready(first.api_addr)
    return workers


def running(leader: ManagerProc, service: str) -> list[dict[str, Any]]:
    tasks = get_json(leader.api_addr, f"/v1/services/{service}/tasks?consistent=true", timeout=10)
    return [t for t in tasks if t.get("state") == "running"]


# pytest-timeout: the faults' time, plus forming, recovering and checking.
@pytest.mark.timeout(_env_int("WARREN_CHAOS_SECONDS", int(SMOKE_SECONDS)) + 600)
def test_chaos(lab: NetnsLab, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    seconds = float(_env_int("WARREN_CHAOS_SECONDS", int(SMOKE_SECONDS)))
    seed = _env_int("WARREN_CHAOS_SEED", random.SystemRandom().randrange(1 << 32))
    out_dir = Path(os.environ.get("WARREN_CHAOS_REPORT") or tmp_path / "report")
    print(f"chaos: seed {seed} (WARREN_CHAOS_SEED={seed} replays it), {seconds:g} s", file=sys.stderr)
    rng = random.Random(seed)
    with contextlib.ExitStack() as stack, manager_clusters(tmp_path, request) as make:
        cluster = make(hosts=lab.hosts(PORTS), extra_flags=["--manager-only"])
        stack.callback(cluster.close)  # managers die before their tmpfs is unmounted
        form(cluster, lab.n - WORKERS, stack)
        workers = start_workers(cluster, lab, tmp_path)
        for w in workers:
            stack.callback(w.close)
        leader = cluster.leader()
        service = service_name()
        spec = {"name": service, "image": "none", "driver": "process", "command": ["sleep", "1000000"],
                "replicas": REPLICAS}  # fmt: skip
        with api(leader.api_addr, 10) as client:
            assert client.post("/v1/services", json=spec).status_code == 201
        eventually(lambda: len(running(leader, service)) == REPLICAS, 60, f"{REPLICAS} replicas running")
        full_disk = cluster.managers[-1] if os.geteuid() == 0 else None
        nemesis = Nemesis(cluster, lab, rng, full_disk=full_disk, workers=workers)
        t0 = time.monotonic()
        # First every kind once (in the seed's order), then the seed's weighted choices.
        first_round = nemesis.possible()
        rng.shuffle(first_round)
        addrs = [m.api_addr for m in cluster.managers]
        cas = Registers(addrs, credentials(addrs[0]), seed)
        with ConfigWriter(cluster.managers, seed) as writer, DuplicateWatch(service) as watch, cas:
            while time.monotonic() - t0 < seconds or first_round:
                kind = first_round.pop() if first_round else nemesis.choose()
                nemesis.run(kind)
            end = time.monotonic()
        lab.heal()
        nemesis.recover()
        leader = cluster.leader()
        after = f"{REPLICAS} replicas running after the run"
        eventually(lambda: len(running(leader, service)) == REPLICAS, 60, after)
        final = {c["name"] for c in get_json(leader.api_addr, "/v1/configs?consistent=true", timeout=15)}
        lost = lost_writes(writer.log, final)
        verdicts = cas.verdicts()
        out_of_order = invariants.leader_violations(cluster.managers)
        anomalies = [f"seed {seed}: leaders out of order: {t}" for t in out_of_order]
        anomalies += [f"a daemon exited on its own: {e}" for e in nemesis.unexpected_exits]
        anomalies += [f"acknowledged write lost: {name}" for name in lost[:20]]
        anomalies += [f"a slot ran twice: {d}" for d in watch.duplicates[:20]]
        anomalies += [f"seed {seed}: {problem}" for problem in verdicts.problems]
        windows = [(f.kind, f.start, f.recovered) for f in nemesis.faults]
        doc = report.summary(
            seed=seed,
            managers=len(cluster.managers),
            duration_s=end - t0,
            faults=nemesis.faults,
            t0=t0,
            operations={"config_creates_acked": len(writer.log.acked), "config_creates_unknown":
                        len(writer.log.unknown), "config_creates_refused": len(writer.log.refused),
                        "config_creates_unsent": writer.log.unsent, **verdicts.counts},  # fmt: skip
            histories={**verdicts.summary,
                       "task_slots": f"{watch.samples} samples, {len(watch.duplicates)} of a slot run twice"},
            lost_writes=lost,
            anomalies=anomalies,
            unavailability=invariants.longest_gaps(writer.log.ok_times + verdicts.ok_times, windows),
        )
        paths = report.write(doc, out_dir)
        print(f"chaos report: {paths[1]}\n{report.markdown(doc)}", file=sys.stderr)
    assert set(doc["faults"]) >= set(KINDS) - {"split"} - ({"disk-full"} if os.geteuid() else set())
    assert writer.log.acked, "no write was acknowledged during the run"
    assert not writer.log.refused, f"writes refused: {writer.log.refused[:5]}"
    assert not anomalies, f"seed {seed}: {anomalies}"
