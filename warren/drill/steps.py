"""The drill's six steps, run in order against the cluster it forms (see `warren drill --help`).

Each step returns what it saw as a `StepResult`; a check that fails raises StepFailed with one line.
A failed step that makes the later ones meaningless (no cluster, no new leader, the manager did not
come back) skips them; the others (services disturbed, writes refused) let the drill go on, since
restarting and rejoining are still worth checking.
"""

from __future__ import annotations

import shutil
import signal
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from warren.config import DrillSettings
from warren.drill.cluster import LocalCluster, Manager, StepFailed, TaskRun
from warren.drill.interrupts import Interrupts
from warren.drill.report import STEP_TITLES, DrillResult, StepResult, format_duration
from warren.errors import ConfigError, WarrenError
from warren.testing.process import Daemon
from warren.testing.wait import NotYet

# Steps whose failure leaves nothing for the later ones to check.
FATAL_STEPS = frozenset({1, 2, 5})
SIGNALS = {"sigkill": signal.SIGKILL, "sigterm": signal.SIGTERM, "sigstop": signal.SIGSTOP}


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a passed step saw; `duration_s` replaces the step's wall time when the step measures a
    specific interval (the election: from the kill to the report of the new leader)."""

    message: str
    details: dict[str, Any]
    duration_s: float | None = None


class Drill:
    """One drill run. `on_step` is called with each step's result as soon as it is known."""

    def __init__(self, settings: DrillSettings, on_step: Callable[[StepResult], None],
                 interrupts: Interrupts, clock: Callable[[], float] = time.monotonic) -> None:
        settings.validate()
        self.settings = settings
        self.on_step = on_step
        self.interrupts = interrupts
        self.clock = clock
        self.base_dir = Path()
        self.temporary = False  # base_dir was made by prepare() (and is removed at the end)
        self.cluster: LocalCluster | None = None
        # What the steps learn and pass on.
        self.leader: Manager | None = None  # before the kill, then the new one
        self.failed: Manager | None = None
        self.baseline: list[TaskRun] = []
        self.restarted_at = 0.0

    def prepare(self) -> Path:
        """Create the data dir (a temporary one unless --data-dir); where data and logs will be."""
        if self.settings.data_dir is None:
            self.base_dir = Path(tempfile.mkdtemp(prefix="warren-drill-"))
            self.temporary = True
        else:
            self.base_dir = Path(self.settings.data_dir).resolve()
            if self.base_dir.exists() and (not self.base_dir.is_dir() or any(self.base_dir.iterdir())):
                raise ConfigError(f"--data-dir {self.settings.data_dir}: not an empty directory")
            self.base_dir.mkdir(parents=True, exist_ok=True)
        return self.base_dir

    def run(self, on_start: Callable[[Path], None] | None = None) -> DrillResult:
        """Run the steps (`on_start(data dir)` first) and stop everything the drill started, also on
        KeyboardInterrupt, which propagates once the clean-up is done."""
        steps: list[StepResult] = []
        started = self.clock()
        try:
            with self.interrupts.deferred():  # the directory exists only once the clean-up knows it
                self.prepare()
                self.cluster = LocalCluster(self.settings, self.base_dir, self.interrupts)
            if on_start is not None:
                on_start(self.base_dir)
            blocked: str | None = None
            for number, step in enumerate(self._steps(), 1):
                if blocked is not None:
                    result = StepResult(number, "skipped", blocked)
                else:
                    result = self._run_step(number, step)
                    if result.status == "failed" and number in FATAL_STEPS:
                        blocked = f"step {number} failed"
                steps.append(result)
                self.on_step(result)
            took = self.clock() - started
        finally:
            with self.interrupts.deferred():
                self._clean_up()
        return DrillResult(
            steps=tuple(steps),
            duration_s=took,
            settings=_settings_doc(self.settings),
            data_dir=str(self.base_dir),
            kept=self.kept,
            processes=self._processes(),
            task_pids=tuple(sorted(self._cluster.seen_task_pids)),
        )

    @property
    def kept(self) -> bool:
        return self.settings.keep or self.settings.data_dir is not None

    def _clean_up(self) -> None:
        try:
            if self.cluster is not None:
                self.cluster.close()
        finally:
            # Only a directory this drill made itself is removed (never an operator's --data-dir).
            if self.temporary and not self.settings.keep:
                shutil.rmtree(self.base_dir, ignore_errors=True)

    def _processes(self) -> tuple[dict[str, Any], ...]:
        assert self.cluster is not None
        daemons: list[tuple[Daemon, str, Manager | None]] = [
            (m.daemon, "manager", m) for m in self.cluster.managers
        ]
        if self.cluster.worker is not None:
            daemons.append((self.cluster.worker, "worker", None))
        return tuple(
            {"label": d.label, "role": role, "pids": list(d.pids), "log": str(d.log_path),
             "name": m.name if m is not None else self.cluster.worker_name,
             **({"api_addr": m.api_addr} if m is not None else {})}
            for d, role, m in daemons
        )

    def _steps(self) -> list[Callable[[], Outcome]]:
        return [self.start_cluster, self.kill_leader, self.services_continue, self.writes_succeed,
                self.restart_failed, self.rejoined]

    def _run_step(self, number: int, step: Callable[[], Outcome]) -> StepResult:
        started = self.clock()
        try:
            outcome = step()
        except (StepFailed, WarrenError) as exc:
            return StepResult(number, "failed", str(exc) or type(exc).__name__, self.clock() - started)
        took = outcome.duration_s if outcome.duration_s is not None else self.clock() - started
        return StepResult(number, "passed", outcome.message, took, outcome.details)

    @property
    def _cluster(self) -> LocalCluster:
        assert self.cluster is not None
        return self.cluster

    # -- 1. a cluster to fail -----------------------------------------------------------------------

    def start_cluster(self) -> Outcome:
        c, s = self._cluster, self.settings
        leader = c.form()
        c.start_worker(leader)
        self.baseline = c.create_service(leader)
        self.leader = leader
        what = f"{s.managers} managers, 1 worker ({s.runtime} runtime), {s.service} " \
               f"{s.replicas}/{s.replicas} running; leader {leader.label}"
        return Outcome(what, {"leader": leader.label, "tasks": [asdict(t) for t in self.baseline]})

    # -- 2. kill the leader, a new one is elected ---------------------------------------------------

    def kill_leader(self) -> Outcome:
        c, s = self._cluster, self.settings
        old = c.wait_leader([m for m in c.managers if m.daemon.alive])  # it may have changed since
        survivors = [m for m in c.managers if m is not old]
        self.failed = old
        how = s.kill.upper()
        killed_at = self.clock()
        old.daemon.signal(SIGNALS[s.kill])
        reported_at = 0.0

        def elected() -> Manager:
            nonlocal reported_at
            for m in survivors:
                try:
                    seen = m.ready().get("leader_id")
                except WarrenError:
                    continue
                if seen is None or seen == old.raft_id:
                    continue
                reported_at = self.clock()
                new = c.by_raft_id(seen)
                if new is None or new not in survivors:
                    raise NotYet(f"{m.label} names leader {seen}, none of the survivors")
                if new.ready().get("role") != "leader":
                    raise NotYet(f"{m.label} names {new.label}, which does not lead (yet)")
                return new
            raise NotYet(f"no survivor names a leader other than {old.label}")

        new = c.poll(elected, f"new leader after {how} of {old.label}")
        self.leader = new
        took = reported_at - killed_at
        if s.kill == "sigkill":
            old.daemon.wait_exit(s.step_timeout_s)  # reap it
        return Outcome(f"{new.label} after {how} of {old.label}",
                       {"old_leader": old.label, "new_leader": new.label, "signal": how,
                        "election_ms": round(took * 1000, 1)}, took)

    # -- 3. services keep running -------------------------------------------------------------------

    def services_continue(self) -> Outcome:
        c, s = self._cluster, self.settings
        assert self.leader is not None
        now = c.running_tasks(self.leader)
        _same_tasks(self.baseline, now, s.runtime)
        extra = [t.name for t in now if t.id not in {b.id for b in self.baseline}]
        if extra:
            raise StepFailed(f"tasks were started meanwhile: {', '.join(extra)}")
        k = len(self.baseline)
        same = "same PIDs" if s.runtime == "process" else "same containers"
        return Outcome(f"{s.service} {k}/{k} running, same task IDs, {same}, checked through "
                       f"{self.leader.label}", {"tasks": [asdict(t) for t in now]})

    # -- 4. writes succeed --------------------------------------------------------------------------

    def writes_succeed(self) -> Outcome:
        c, s = self._cluster, self.settings
        assert self.leader is not None and self.failed is not None
        survivors = [m for m in c.managers if m is not self.failed]
        followers = [m for m in survivors if m is not self.leader]
        via = followers[0] if followers else self.leader
        sent = self.clock()
        with c.writer(via) as client:
            client.update_service(s.service, {"replicas": s.scaled_replicas})
        acked = self.clock() - sent
        runs = c.wait_running(via, s.scaled_replicas)
        started = self.clock() - sent
        try:
            _same_tasks(self.baseline, runs, s.runtime)
        except StepFailed as exc:
            raise StepFailed(f"scaled to {s.scaled_replicas}, but {exc}") from exc
        role = "a follower" if via is not self.leader else "the leader"
        return Outcome(
            f"{s.service} scaled to {s.scaled_replicas} through {via.label} ({role}), acknowledged in "
            f"{format_duration(acked)}, new replica running",
            {"via": via.label, "ack_ms": round(acked * 1000, 1), "running_ms": round(started * 1000, 1),
             "tasks": [asdict(t) for t in runs]},
        )

    # -- 5. restart the failed manager --------------------------------------------------------------

    def restart_failed(self) -> Outcome:
        c, s = self._cluster, self.settings
        m = self.failed
        assert m is not None
        details: dict[str, Any] = {"manager": m.label}
        if s.kill == "sigstop":
            self.restarted_at = self.clock()
            m.daemon.signal(signal.SIGCONT)
            how = "continued with SIGCONT"
        else:
            code = m.daemon.wait_exit(s.step_timeout_s)
            if code is None:
                raise StepFailed(f"{m.label} did not exit within {format_duration(s.step_timeout_s)} "
                                 f"of {s.kill.upper()}")
            details["exit_status"] = code
            self.restarted_at = self.clock()
            m.daemon.start()
            how = "restarted with its own command on its data dir"

        def serving() -> bool:
            c.check_alive(m)
            m.health()
            return True

        c.poll(serving, f"answer from {m.label}")
        return Outcome(f"{m.label} {how}, serving its API", details)

    # -- 6. it rejoins ------------------------------------------------------------------------------

    def rejoined(self) -> Outcome:
        c = self._cluster
        m = self.failed
        assert m is not None
        seen: dict[str, Any] = {}

        def caught_up() -> Manager:
            c.check_alive(m)
            mine = m.ready()
            leader = c.by_raft_id(mine.get("leader_id"))
            if mine.get("role") != "follower" or leader is None or leader is m:
                raise NotYet(f"{m.label} is {mine.get('role')} of leader {mine.get('leader_id')}")
            theirs = leader.ready()
            if theirs.get("role") != "leader":
                raise NotYet(f"{m.label} names {leader.label}, which does not lead")
            commit = int(theirs.get("commit_index") or 0)
            mine = m.ready()  # read after the leader's commit index: caught up to at least that
            applied = int(mine.get("applied_index") or 0)
            if applied < commit:
                raise NotYet(f"{m.label} applied {applied} < leader's commit index {commit}")
            row = c.row(leader.info(), m.api_addr)
            if row is None or row.get("role") != "follower" or row.get("status") != "ready":
                raise NotYet(f"{leader.label} lists {m.label} as {row}")
            seen.update(applied=applied, commit=commit)
            return leader

        leader = c.poll(caught_up, f"rejoin of {m.label}")
        since = self.clock() - self.restarted_at
        return Outcome(
            f"{m.label} follows {leader.label}, applied index {seen['applied']} ≥ leader's commit index "
            f"{seen['commit']}, {format_duration(since)} after its restart",
            {"manager": m.label, "leader": leader.label, "applied_index": seen["applied"],
             "commit_index": seen["commit"], "since_restart_ms": round(since * 1000, 1)},
        )


def _same_tasks(before: list[TaskRun], now: list[TaskRun], runtime: str) -> None:
    """StepFailed unless the tasks running now are those of `before`, in the same containers and
    (process runtime) the same live processes: nothing was restarted."""
    by_id = {t.id: t for t in now}
    for old in before:
        cur = by_id.get(old.id)
        if cur is None:
            raise StepFailed(f"task {old.name} ({old.id}) no longer runs; running: "
                             f"{[t.name + ' ' + t.id for t in now] or 'none'}")
        if cur.container_id != old.container_id:
            raise StepFailed(f"task {old.name} has a new container ({cur.container_id}, was "
                             f"{old.container_id})")
        if runtime == "process" and (cur.pid, cur.pid_start) != (old.pid, old.pid_start):
            now_pid = "no live process" if cur.pid is None else f"pid {cur.pid}"
            raise StepFailed(f"task {old.name} runs as {now_pid}, was pid {old.pid}: it was restarted")


def _settings_doc(settings: DrillSettings) -> dict[str, Any]:
    doc = {name: getattr(settings, name) for name in settings.__dataclass_fields__}
    doc["command"] = list(settings.command)
    doc["image"] = settings.service_image
    return doc


__all__ = ["STEP_TITLES", "Drill", "Outcome"]
