"""The drill's throwaway cluster on this machine: N managers and one worker, formed the operator's way
(`cluster init`, join tokens, `manager join`, `worker start`), each manager on a loopback address of
its own with free ports; probes of its managers; its service's tasks; and its clean-up.

The daemons are warren.testing's, the harness the integration tests and the benchmarks use too.
Everything is observed through the managers' API (via warren.client's `ManagerClient`, over mutual
TLS with the admin certificate `cluster init` wrote into the drill's own config dir, `<drill
dir>/config`: the daemons get it as WARREN_CONFIG_DIR, and the user's ~/.config is never written)
and, for the process runtime, through the task state files the worker writes (`<worker
data>/tasks/<task>/state.json`: pid and start time) and /proc. `close()` stops every process the
drill started, whatever state the cluster is in: the worker, the tasks' processes (by their recorded
pids, and any process whose working directory is a task directory; cleanup.py) or containers (by the
cluster's labels), and the managers.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from warren.client import ManagerClient
from warren.config import ClientSettings, DrillSettings
from warren.drill.cleanup import kill_task_processes, remove_containers
from warren.drill.interrupts import Interrupts
from warren.drill.report import format_duration
from warren.errors import WarrenError
from warren.pki import userconfig
from warren.runtime import PROCESS_TASKS_DIR
from warren.runtime.procfs import is_ours
from warren.runtime.taskdir import read_task_state
from warren.testing.managers import ManagerDaemon, admin_credentials, form
from warren.testing.process import WARREN, Daemon, daemon_env
from warren.testing.wait import NotYet, WaitTimeout, eventually

T = TypeVar("T")
Doc = dict[str, Any]


class StepFailed(Exception):
    """A step's check failed or timed out; the message is one line saying what was seen."""


def wait_until(check: Callable[[], T | None], timeout_s: float, what: str, poll_s: float,
               clock: Callable[[], float] = time.monotonic) -> T:
    """`eventually`, worded for a step: StepFailed with the last thing seen once `timeout_s` has passed.

    NotYet and WarrenError (a manager down, 503) count as "not yet"; StepFailed ends the wait at once.
    """
    try:
        return eventually(check, timeout_s, what, poll_s=poll_s, not_yet=(NotYet, WarrenError), clock=clock)
    except WaitTimeout as exc:
        last = exc.last
        seen = (str(last) or type(last).__name__) if isinstance(last, BaseException) else repr(last)
        raise StepFailed(f"no {what} within {format_duration(timeout_s)}: {seen}") from None


@dataclass
class Manager:
    """One manager of the drill: its daemon (with its addresses) and a probe client (one attempt,
    short), made by `connect` on first use (the admin certificate it needs exists once the cluster is
    founded)."""

    daemon: ManagerDaemon
    connect: Callable[[str, ClientSettings], ManagerClient]
    probe_settings: ClientSettings
    name: str | None = None  # its node name, once it is a member
    raft_id: int | None = None
    _probe: ManagerClient | None = field(default=None, repr=False)

    @property
    def label(self) -> str:
        return self.daemon.label

    @property
    def api_addr(self) -> str:
        return self.daemon.api_addr

    @property
    def probe(self) -> ManagerClient:
        """The probe client (NotYet while the cluster has no admin certificate)."""
        if self._probe is None:
            self._probe = self.connect(self.api_addr, self.probe_settings)
        return self._probe

    def close(self) -> None:
        if self._probe is not None:
            self._probe.close()

    def ready(self) -> Doc:
        """GET /v1/ready: 200 means it knows a leader and keeps up applying; 503 raises."""
        return _doc(self.probe.request("GET", "/v1/ready"))

    def health(self) -> Doc:
        return _doc(self.probe.request("GET", "/v1/health"))

    def info(self) -> Doc:
        return self.probe.cluster_info()


@dataclass(frozen=True, slots=True)
class TaskRun:
    """A running task of the service as the API shows it, with its process (process runtime)."""

    id: str
    name: str
    container_id: str
    pid: int | None = None
    pid_start: int | None = None


@dataclass
class LocalCluster:
    """The managers and the worker of one drill run, under `base_dir`."""

    settings: DrillSettings
    base_dir: Path
    interrupts: Interrupts
    managers: list[Manager] = field(default_factory=list)
    worker: Daemon | None = None
    worker_name: str | None = None
    cluster_id: str | None = None
    seen_task_pids: set[int] = field(default_factory=set)
    _credentials: userconfig.ClientCredentials | None = None

    @property
    def worker_dir(self) -> Path:
        return self.base_dir / "worker"

    @property
    def config_dir(self) -> Path:
        """The daemons' WARREN_CONFIG_DIR: where `cluster init` writes the admin certificate."""
        return self.base_dir / "config"

    def credentials(self) -> userconfig.ClientCredentials:
        """The drill cluster's admin credentials (NotYet until `cluster init` has written them)."""
        if self._credentials is None:
            self._credentials = admin_credentials(self.config_dir)
            if self._credentials is None:
                raise NotYet(f"no admin certificate in {self.config_dir} yet")
        return self._credentials

    def client(self, api_addr: str, settings: ClientSettings) -> ManagerClient:
        """A client of the manager at `api_addr` with the drill's admin certificate (never the user's)."""
        return ManagerClient(api_addr, settings=settings, credentials=self.credentials())

    @property
    def tasks_dir(self) -> Path:
        return self.worker_dir / PROCESS_TASKS_DIR

    def poll(self, check: Callable[[], T], what: str, timeout_s: float | None = None) -> T:
        """`wait_until` with the drill's poll interval, within a step's timeout unless told otherwise."""
        timeout = self.settings.step_timeout_s if timeout_s is None else timeout_s
        return wait_until(check, timeout, what, self.settings.poll_interval_s)

    def writer(self, manager: Manager) -> ManagerClient:
        """A client that retries (no leader, 503) for up to a step's timeout; use as a context manager."""
        budget = self.settings.step_timeout_s
        settings = ClientSettings(request_timeout_s=min(budget, ClientSettings().request_timeout_s),
                                  retry_deadline_s=budget)
        return self.client(manager.api_addr, settings)

    # -- forming ------------------------------------------------------------------------------------

    def new_manager(self) -> Manager:
        index = len(self.managers) + 1
        label = f"manager{index}"
        daemon = ManagerDaemon(
            label, f"127.0.0.{self.settings.first_host + index - 1}", self.base_dir / label,
            self.base_dir / f"{label}.log", cwd=self.base_dir, env=daemon_env(self.config_dir),
            flags=["--manager-only"], guard=self.interrupts.deferred,
        )
        probe = ClientSettings(request_timeout_s=self.settings.probe_timeout_s, retry_deadline_s=0.0)
        m = Manager(daemon, self.client, probe)
        self.managers.append(m)
        return m

    def form(self) -> Manager:
        """Found the cluster, join the other managers one by one; the leader once all agree on it."""

        def token(first: ManagerDaemon) -> str:
            with self.writer(self.managers[0]) as client:
                return str(client.create_join_token("manager")["token"])

        def new() -> ManagerDaemon:
            return self.new_manager().daemon

        def joined(daemon: ManagerDaemon) -> None:
            self.wait_member(next(m for m in self.managers if m.daemon is daemon))

        form(self.settings.managers, new, token, joined)
        leader = self.wait_leader(self.managers)
        self.cluster_id = str(leader.info().get("cluster_id"))
        return leader

    def wait_member(self, m: Manager) -> None:
        """Until `m` is ready and the leader lists it as a ready leader or follower (and we know its
        node name and Raft ID)."""

        def member() -> bool:
            self.check_alive(m)
            m.ready()
            leader_addr = (m.info().get("leader") or {}).get("api_addr")
            leader = self.by_addr(leader_addr)
            if leader is None:
                raise NotYet(f"{m.label} names no leader of the drill's managers ({leader_addr})")
            row = self.row(leader.info(), m.api_addr)
            if row is None or row.get("status") != "ready" or row.get("role") not in ("leader", "follower"):
                raise NotYet(f"the leader lists {m.label} as {row}")
            m.name, m.raft_id = str(row["name"]), int(row["raft_id"])
            return True

        self.poll(member, f"{m.label} as a ready member")

    def start_worker(self, leader: Manager) -> None:
        """`warren worker start` with a worker token, every manager's address; until the leader lists
        it ready."""
        with self.writer(leader) as client:
            token = client.create_join_token("worker")["token"]
        self.worker = Daemon("worker", [
            *WARREN, "worker", "start", "--token", token,
            "--manager", ",".join(m.api_addr for m in self.managers),
            "--data-dir", str(self.worker_dir), "--runtime", self.settings.runtime,
        ], self.base_dir / "worker.log", cwd=self.base_dir, env=daemon_env(self.config_dir),
            guard=self.interrupts.deferred)
        self.worker.start()
        worker = self.worker

        def ready() -> str:
            if not worker.alive:
                raise StepFailed(worker.exit_note())
            nodes = [n for n in leader.probe.list_nodes() if n.get("role") == "worker"]
            if not nodes or nodes[0].get("state") != "ready":
                raise NotYet(f"worker nodes: {[(n.get('name'), n.get('state')) for n in nodes]}")
            return str(nodes[0]["name"])

        self.worker_name = self.poll(ready, "worker ready")

    def create_service(self, leader: Manager) -> list[TaskRun]:
        s = self.settings
        spec = {"name": s.service, "image": s.service_image, "driver": s.runtime,
                "command": list(s.command), "replicas": s.replicas}
        with self.writer(leader) as client:
            client.create_service(spec)
        return self.wait_running(leader, s.replicas)

    # -- observing ----------------------------------------------------------------------------------

    def check_alive(self, m: Manager) -> None:
        if not m.daemon.alive:
            raise StepFailed(m.daemon.exit_note())

    def by_addr(self, api_addr: object) -> Manager | None:
        return next((m for m in self.managers if m.api_addr == api_addr), None)

    def by_raft_id(self, raft_id: object) -> Manager | None:
        return next((m for m in self.managers if m.raft_id is not None and m.raft_id == raft_id), None)

    @staticmethod
    def row(info: Mapping[str, Any], api_addr: str) -> Mapping[str, Any] | None:
        """The row of `info["managers"]` for the manager at `api_addr`."""
        return next((r for r in info.get("managers") or [] if r.get("api_addr") == api_addr), None)

    def wait_leader(self, among: Iterable[Manager], timeout_s: float | None = None) -> Manager:
        """The manager every one of `among` (ready) names as leader, and which says it leads."""
        group = list(among)

        def agreed() -> Manager:
            ids = {m.label: m.ready().get("leader_id") for m in group}
            if len(set(ids.values())) != 1:
                raise NotYet(f"leaders seen: {ids}")
            leader = self.by_raft_id(next(iter(ids.values())))
            if leader is None or leader not in group:
                raise NotYet(f"leader {ids} is none of {[m.label for m in group]}")
            if leader.ready().get("role") != "leader":
                raise NotYet(f"{leader.label} does not lead (yet)")
            return leader

        return self.poll(agreed, "agreed leader", timeout_s)

    def running_tasks(self, via: Manager) -> list[TaskRun]:
        """The service's tasks that are meant to run and run, by the API of `via`, with their process
        (process runtime: from the worker's state file, if that process is alive)."""
        tasks = via.probe.list_tasks(self.settings.service)
        out = []
        for t in tasks:
            if t.get("desired_state") != "running" or t.get("state") != "running":
                continue
            pid, start = self.task_process(str(t["id"]))
            out.append(TaskRun(str(t["id"]), str(t.get("name")), str(t.get("container_id")), pid, start))
        return sorted(out, key=lambda r: r.name)

    def wait_running(self, via: Manager, replicas: int) -> list[TaskRun]:
        """Until exactly `replicas` tasks run (with a live process under the process runtime)."""

        def running() -> list[TaskRun]:
            if self.worker is not None and not self.worker.alive:
                raise StepFailed(self.worker.exit_note())
            runs = self.running_tasks(via)
            if self.settings.runtime == "process":
                runs = [r for r in runs if r.pid is not None]
            if len(runs) != replicas:
                raise NotYet(f"{len(runs)}/{replicas} running; {self.task_notes(via)}")
            return runs

        return self.poll(running, f"{self.settings.service} {replicas}/{replicas} running")

    def task_notes(self, via: Manager) -> str:
        """What the tasks that do not run say (their state and message), for a failure line."""
        try:
            tasks = via.probe.list_tasks(self.settings.service)
        except WarrenError as exc:
            return str(exc)
        notes = [f"{t.get('name')} {t.get('state')}" + (f": {t['message']}" if t.get("message") else "")
                 for t in tasks if t.get("state") != "running"]
        return "; ".join(notes[:3]) or "every listed task runs"

    def task_process(self, task_id: str) -> tuple[int | None, int | None]:
        """(pid, start time) of a process-runtime task's live process; (None, None) otherwise."""
        if self.settings.runtime != "process":
            return None, None
        state = read_task_state(self.tasks_dir, task_id) or {}
        pid, start = state.get("pid"), state.get("pid_start")
        if not isinstance(pid, int) or not isinstance(start, int) or not is_ours(pid, start):
            return None, None
        self.seen_task_pids.add(pid)
        return pid, start

    # -- clean-up -----------------------------------------------------------------------------------

    def close(self) -> None:
        """Stop everything this drill started: the worker first (so nothing restarts a task), then the
        tasks, then the managers. Signals are held meanwhile."""
        timeout = self.settings.cleanup_timeout_s
        with self.interrupts.deferred():
            try:
                if self.worker is not None:
                    self.worker.kill(timeout)
                self.seen_task_pids |= kill_task_processes(self.tasks_dir, timeout,
                                                           self.settings.poll_interval_s)
                if self.settings.runtime == "docker" and self.cluster_id and self.worker_name:
                    remove_containers(self.cluster_id, self.worker_name, timeout)
            finally:
                for m in self.managers:
                    m.daemon.kill(timeout)
                    m.close()

def _doc(data: object) -> Doc:
    if not isinstance(data, dict):
        raise WarrenError(f"unexpected answer: {type(data).__name__}")
    return data
