"""The worker's reconcile loop: keep this node's containers in line with its assignments.

Inputs: the assignments (from the session, or from worker.db while no manager answers), the
runtimes' containers (listed at start, so a restarted worker adopts what it left running), their
exits (`runtime.exits()`), and health check results. Each task is converged on its own (one step at
a time, never two at once for the same task, any number of tasks in parallel):

- desired running, no container: report `starting`, start it, report `running` (or `failed` with the
  runtime's reason; `rejected` if this worker has no runtime for its driver);
- desired shutdown: stop and remove its container, report `shutdown`;
- not assigned at all: stop and remove its container, report nothing (the leader is done with it);
- its container exited (or failed its health check): report `complete`/`failed` and remove the
  container. A restart is a new task the leader creates, not a local affair, with one exception:
  cut off from every manager, the task is started again in place (same task ID) under its restart
  policy, and its state is reported once a manager answers again.

Status updates go through worker.db's queue and are sent by their own loop as soon as they are made
(an exit reaches the leader in milliseconds, not at the next heartbeat).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from warren.config import WorkerSettings
from warren.errors import StorageError
from warren.runtime.base import (
    ContainerRuntime,
    NodeResources,
    RuntimeStartError,
    RuntimeUnavailableError,
)
from warren.spec.taskstate import COMPLETE, FAILED, REJECTED, RUNNING, SHUTDOWN, STARTING, TERMINAL
from warren.worker.cache import LocalTask, StatusUpdate, WorkerCache
from warren.worker.health import STARTING as HEALTH_STARTING
from warren.worker.health import UNHEALTHY, HealthMonitor, HealthSpec
from warren.worker.link import ManagerLink
from warren.worker.logstream import LogForwarder
from warren.worker.reporter import StatusReporter
from warren.worker.secrets import TaskSecrets, secret_names
from warren.worker.session import Backoff, ManagerSession, NodeRemovedError
from warren.worker.taskspec import RestartPolicy, driver_of, exit_message, stop_timeout, task_run

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_ERROR = 1

# Local state of a task waiting to be restarted in place (never reported: the leader still has it
# running).
RESTARTING = "restarting"
# Container IDs this worker removed, remembered so a late exit event for one is not taken for a
# new exit; entries.
_GONE_KEEP = 4096


@dataclass(slots=True)
class Container:
    """One of this worker's containers as the agent last saw it."""

    task_id: str
    container_id: str
    driver: str
    running: bool
    exit_code: int | None = None
    message: str = ""


class Agent:
    """One worker's agent; `run(stop)` until `stop` is set (0) or the node was removed (1).

    Everything it is given is open and owned by the caller (session, cache, runtimes). `announce`
    receives the few lines worth printing to a person (the daemon prints them with a check mark).
    """

    def __init__(
        self,
        *,
        node: str,
        settings: WorkerSettings,
        session: ManagerSession,
        cache: WorkerCache,
        runtimes: Sequence[ContainerRuntime],
        resources: NodeResources,
        addr: str,
        labels: Mapping[str, str],
        heartbeat_period_s: float = 1.0,
        announce: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        secrets: TaskSecrets | None = None,
    ) -> None:
        self.node = node
        self.settings = settings
        self.session = session
        self.cache = cache
        self.runtimes = {rt.driver: rt for rt in runtimes}
        self.clock = clock
        self.wall = wall

        self.digest, self.assignments = cache.assignments()
        # Whether `assignments` is something a manager said (now, or before a restart): only then may
        # containers of tasks missing from it be removed.
        self.authoritative = self.digest is not None
        self.local = cache.local_tasks()
        self.containers: dict[str, Container] = {}
        self.exit_status = EXIT_OK
        # Secret values (memory only) and each task's secrets dir on tmpfs.
        self.secrets = secrets if secrets is not None else TaskSecrets(settings.resolved_secrets_dir(node))
        self._secrets_asked: frozenset[str] = frozenset()  # missing values last asked for (known=None)

        self._gone: dict[str, None] = {}
        self._steps: dict[str, asyncio.Task[None]] = {}
        # The stop timeout of each task assigned, kept while it has a container: a task whose service was
        # removed is no longer in the assignments, and its container must still get its own grace, not the
        # default.
        self._stop_timeouts: dict[str, float] = {}
        self._remember_stop_timeouts()
        self._dirty: set[str] = set()
        self._all_dirty = True
        self._redo: set[str] = set()
        self._wake = asyncio.Event()
        self._done = asyncio.Event()
        self._monitors: dict[str, HealthMonitor] = {}
        self._unhealthy: dict[str, tuple[str, str]] = {}  # task -> (container, reason)
        self._timers: set[asyncio.TimerHandle] = set()
        self._loops: list[asyncio.Task[None]] = []
        self.statuses = StatusReporter(session, cache, settings)
        self.logs = LogForwarder(session, node, self._log_source)
        self.link = ManagerLink(
            session, settings, self, addr=addr, labels=labels, resources=resources,
            heartbeat_period_s=heartbeat_period_s, announce=announce or (lambda line: log.info("%s", line)),
            clock=clock,
        )

    # -- life cycle -------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> int:
        """Run until `stop` is set; the containers keep running after it returns."""
        try:
            for runtime in self.runtimes.values():
                self._loops.append(self._spawn(self._watch_exits(runtime), f"exits-{runtime.driver}"))
            await self._adopt()
            self._clean_secrets()
            self._loops += [
                self._spawn(self.link.run(), "session"),
                self._spawn(self.statuses.run(), "status"),
                self._spawn(self._reconcile_loop(), "reconcile"),
            ]
            stopping = asyncio.create_task(stop.wait())
            done = asyncio.create_task(self._done.wait())
            try:
                await asyncio.wait({stopping, done}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                stopping.cancel()
                done.cancel()
            return self.exit_status
        finally:
            await self._close()

    async def _close(self) -> None:
        for handle in self._timers:
            handle.cancel()
        tasks = [*self._loops, *self._steps.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.logs.close()
        for monitor in list(self._monitors.values()):
            await monitor.stop()
        self._monitors.clear()

    def _spawn(self, coro: Any, name: str) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.create_task(self._guard(coro, name), name=name)
        return task

    async def _guard(self, coro: Any, name: str) -> None:
        """A loop's task boundary: the node's removal or a broken worker.db ends the agent."""
        try:
            await coro
        except NodeRemovedError as exc:
            log.error(
                "node %s was removed from the cluster (a manager refused its credentials: %s); the worker "
                "stops. To rejoin, remove its data dir and run `warren worker start` with a new token",
                self.node, exc,
            )
            self._fail()
        except StorageError as exc:
            log.critical("worker.db failed: %s; the worker stops", exc)
            self._fail()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("the worker's %s loop failed; the worker stops", name)
            self._fail()

    def _fail(self) -> None:
        self.exit_status = EXIT_ERROR
        self._done.set()

    async def _adopt(self) -> None:
        """Take over the containers this node already has (left by a previous run of the worker)."""
        for runtime in self.runtimes.values():
            for inst in await runtime.list():
                known = self.containers.get(inst.container_id)
                if known is not None and not known.running:
                    continue  # its exit arrived while listing
                self.containers[inst.container_id] = Container(
                    inst.task_id, inst.container_id, runtime.driver, inst.running, inst.exit_code
                )
        running = sum(1 for c in self.containers.values() if c.running)
        if self.containers:
            log.info("found %d containers of this node (%d running)", len(self.containers), running)

    def _clean_secrets(self) -> None:
        """Remove the secrets dirs of tasks this worker no longer has (they ended while it was away)."""
        keep = set(self.assignments) | set(self.local) | {c.task_id for c in self.containers.values()}
        try:
            self.secrets.clean(keep)
        except OSError as exc:
            log.warning("cannot clean up the secrets dir %s: %s", self.secrets.base_dir, exc)

    # -- the session's news (link.LinkListener) ----------------------------------------------------

    @property
    def cut_off(self) -> bool:
        return self.link.cut_off

    def known_digest(self) -> str | None:
        # Values are held in memory only: after a restart the cached assignments are current but their
        # secrets are gone. Claiming no assignments gets them all again, once per set of missing values
        # (one the leader cannot send, e.g. a removed secret, is not asked for at every heartbeat).
        if self.digest is not None:
            needed = {n for d in self.assignments.values() if d.get("desired_state") == RUNNING
                      for n in secret_names(d)}
            missing = frozenset(self.secrets.missing(needed))
            if missing and missing != self._secrets_asked:
                self._secrets_asked = missing
                return None
        return self.digest

    def secrets_received(self, values: Mapping[str, Any]) -> None:
        """The values of the secrets this node's tasks use (with a full assignments answer)."""
        self.secrets.replace(values)

    def _remember_stop_timeouts(self) -> None:
        # Of the tasks no longer assigned, only those with a container here (or one being started) are
        # kept: the map must not grow with every task this worker ever ran.
        here = {c.task_id for c in self.containers.values()} | self._steps.keys()
        self._stop_timeouts = {t: s for t, s in self._stop_timeouts.items() if t in here}
        for task_id, doc in self.assignments.items():
            self._stop_timeouts[task_id] = stop_timeout(doc, self.settings.stop_timeout_s)

    def assignments_received(self, digest: str | None, tasks: list[dict[str, Any]] | None) -> None:
        if tasks is not None:
            # Only the tasks whose document changed (or that left) are saved and looked at again.
            new = {str(t["task_id"]): t for t in tasks}
            changed = [task_id for task_id, doc in new.items() if self.assignments.get(task_id) != doc]
            removed = [task_id for task_id in self.assignments if task_id not in new]
            digest = digest or ""
            self.cache.save_assignments(digest, [new[task_id] for task_id in changed], removed)
            self.assignments = new
            self._remember_stop_timeouts()
            self.digest = digest
            for task_id in changed + removed:
                self._poke(task_id)
        if not self.authoritative:
            self.authoritative = True
            self._poke()

    def log_requested(self, request: Mapping[str, Any]) -> None:
        self.logs.open(request)

    def connectivity_changed(self, online: bool) -> None:
        # Online: queued statuses go now, tasks waiting for a local restart are reported instead.
        # Offline: tasks whose exit no manager heard of may be restarted in place.
        if online:
            self.statuses.wake()
        self._poke()

    def running_count(self) -> int:
        return sum(1 for c in self.containers.values() if c.running)

    # -- exits ------------------------------------------------------------------------------------

    async def _watch_exits(self, runtime: ContainerRuntime) -> None:
        backoff = Backoff(self.settings.retry_initial_delay_s, self.settings.retry_max_delay_s)
        while True:
            try:
                async for ex in runtime.exits():
                    backoff.reset()
                    self._on_exit(runtime.driver, ex.task_id, ex.container_id, ex.exit_code, ex.message)
            except RuntimeUnavailableError as exc:
                log.warning("the %s runtime's exit events broke off: %s", runtime.driver, exc)
            await asyncio.sleep(backoff.delay())

    def _on_exit(
        self, driver: str, task_id: str, container_id: str, exit_code: int | None, message: str
    ) -> None:
        if container_id in self._gone:
            return  # removed by this worker (it stopped it); nothing to report
        known = self.containers.get(container_id)
        if known is None:
            known = Container(task_id, container_id, driver, running=False)
            self.containers[container_id] = known
        known.running = False
        known.exit_code = exit_code
        known.message = message
        self._poke(known.task_id)

    def _on_health(self, task_id: str, container_id: str, health: str, reason: str) -> None:
        lt = self.local.get(task_id)
        if lt is None or lt.container_id != container_id or lt.state != RUNNING:
            return
        if health == UNHEALTHY:
            self._unhealthy[task_id] = (container_id, reason)
            self._poke(task_id)
            return
        update = StatusUpdate(task_id, RUNNING, lt.message, self.wall(), container_id, health=health)
        self.statuses.report(update)

    # -- reconciling ------------------------------------------------------------------------------

    def _poke(self, task_id: str | None = None) -> None:
        """Look at one task again (all of them with None)."""
        if task_id is None:
            self._all_dirty = True
        else:
            self._dirty.add(task_id)
        self._wake.set()

    def _poke_later(self, delay_s: float, task_id: str) -> None:
        loop = asyncio.get_running_loop()

        def fire() -> None:
            self._timers.discard(handle)
            self._poke(task_id)

        handle = loop.call_later(max(0.0, delay_s), fire)
        self._timers.add(handle)

    async def _reconcile_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            if self._all_dirty:
                self._all_dirty = False
                ids = set(self.assignments) | set(self.local) | {c.task_id for c in self.containers.values()}
            else:
                ids = self._dirty
            self._dirty = set()
            for task_id in ids:
                if task_id in self._steps:
                    self._redo.add(task_id)
                else:
                    self._steps[task_id] = asyncio.create_task(
                        self._converge(task_id), name=f"task-{task_id}"
                    )

    async def _converge(self, task_id: str) -> None:
        try:
            while await self._step(task_id):
                pass
        except (RuntimeUnavailableError, OSError) as exc:
            log.warning("task %s: the runtime failed (%s); trying again", task_id, exc)
            self._poke_later(self.settings.retry_max_delay_s, task_id)
        except StorageError as exc:
            log.critical("worker.db failed: %s; the worker stops", exc)
            self._fail()
        except asyncio.CancelledError:
            raise
        except Exception:  # a task boundary: one task's trouble must not stop the others
            log.exception("task %s: reconciling failed; trying again", task_id)
            self._poke_later(self.settings.retry_max_delay_s, task_id)
        finally:
            self._steps.pop(task_id, None)
            if task_id in self._redo:
                self._redo.discard(task_id)
                self._poke(task_id)

    async def _step(self, task_id: str) -> bool:
        """One step towards what the task's assignment asks; True if it did something (look again)."""
        doc = self.assignments.get(task_id)
        lt = self.local.get(task_id)
        mine = [c for c in self.containers.values() if c.task_id == task_id]

        if doc is None:  # not (or no longer) this node's: remove silently
            if not self.authoritative:
                return False  # nobody said yet; the first session answer decides
            if mine:
                await self._discard(mine[0], None)
                return True
            await self._stop_monitor(task_id)
            if lt is not None:
                self._drop_local(task_id)
            return False

        if doc.get("desired_state") != RUNNING:
            if mine:
                await self._discard(mine[0], doc)
                return True
            await self._stop_monitor(task_id)
            if lt is None or lt.state not in TERMINAL:
                self._set_state(task_id, driver_of(doc), lt, state=SHUTDOWN, message="stopped as asked")
            return False

        if lt is not None and lt.state in TERMINAL:
            if mine:  # left over (a stop that failed earlier)
                await self._discard(mine[0], doc)
                return True
            return self._maybe_restart_final(doc, lt)

        driver = driver_of(doc)
        runtime = self.runtimes.get(driver)
        if runtime is None:
            have = ", ".join(sorted(self.runtimes)) or "none"
            message = f"this worker has no {driver} runtime (it has: {have})"
            self._set_state(task_id, driver, lt, state=REJECTED, message=message)
            return False

        live = [c for c in mine if c.running]
        if live:
            keep = next((c for c in live if lt is not None and c.container_id == lt.container_id), live[0])
            extra = [c for c in mine if c is not keep]
            if extra:  # an older container of a task restarted in place, or a duplicate
                await self._discard(extra[0], doc)
                return True
            return await self._keep_running(doc, lt, keep, runtime)

        if lt is not None and lt.state == RESTARTING:
            return await self._restart_due(doc, lt, mine, runtime)

        if mine or (lt is not None and lt.container_id is not None):
            # Its container exited (or vanished while this worker was not looking).
            last = next((c for c in mine if lt is not None and c.container_id == lt.container_id),
                        mine[0] if mine else None)
            for c in mine:
                await self._remove(c)
            if last is None:
                await self._ended(doc, lt, None, "its container disappeared", failed=True)
            else:
                await self._ended(doc, lt, last.exit_code, exit_message(last.exit_code, last.message),
                                  failed=last.exit_code != 0)
            return True

        if lt is None and doc.get("state") in (STARTING, RUNNING):
            # The leader has it running here, but this worker has no trace of it (worker.db lost).
            message = "the worker has no container for this task (its local state was lost)"
            self._set_state(task_id, driver, lt, state=FAILED, message=message)
            return False

        await self._start(doc, lt, runtime, restart=False)
        return True

    async def _keep_running(
        self, doc: Mapping[str, Any], lt: LocalTask | None, container: Container, runtime: ContainerRuntime
    ) -> bool:
        task_id = container.task_id
        if lt is None or lt.container_id != container.container_id or lt.state != RUNNING:
            # Adopted: left running by a previous run of this worker.
            lt = self._set_state(task_id, runtime.driver, lt, state=RUNNING, message="running",
                                 container_id=container.container_id)
            log.info("task %s: adopted its running container %s", task_id, container.container_id[:12])
            return True
        unhealthy = self._unhealthy.get(task_id)
        if unhealthy is not None and unhealthy[0] == container.container_id:
            del self._unhealthy[task_id]
            await self._discard(container, doc)
            await self._ended(doc, lt, None, f"health check failed: {unhealthy[1]}", failed=True,
                              health=UNHEALTHY)
            return True
        spec = HealthSpec.from_doc((doc.get("spec") or {}).get("health"))
        monitor = self._monitors.get(task_id)
        if spec is not None and (monitor is None or monitor.container_id != container.container_id):
            await self._stop_monitor(task_id)
            monitor = HealthMonitor(task_id, container.container_id, spec, runtime, self._on_health,
                                    clock=self.clock)
            self._monitors[task_id] = monitor
            monitor.start()
        return False

    async def _start(self, doc: Mapping[str, Any], lt: LocalTask | None, runtime: ContainerRuntime,
                     *, restart: bool) -> None:
        task_id = str(doc["task_id"])
        restarts = lt.restarts if lt is not None else 0
        if restart:
            restarts += 1
        else:
            lt = self._set_state(task_id, runtime.driver, lt, state=STARTING, message="starting")
        try:
            secrets_dir = self.secrets.prepare(task_id, secret_names(doc), shared=runtime.driver == "docker")
            run = task_run(doc, self.node, self.settings.stop_timeout_s, secrets_dir)
            container_id = await runtime.start(run)
        except (RuntimeStartError, RuntimeUnavailableError) as exc:
            message = str(exc) or type(exc).__name__
            log.warning("task %s could not start: %s", task_id, message)
            self._set_state(task_id, runtime.driver, lt, state=FAILED, message=message, restarts=restarts)
            return
        self._gone.pop(container_id, None)
        # setdefault: its exit may have been seen already (a command that ends at once).
        self.containers.setdefault(container_id, Container(task_id, container_id, runtime.driver, True))
        if restart:
            assert lt is not None
            message = f"restarted in place by the worker ({lt.message}; local restart {restarts})"
            log.info("task %s: %s", task_id, message)
        else:
            message = "started"
        has_health = HealthSpec.from_doc((doc.get("spec") or {}).get("health")) is not None
        self._set_state(task_id, runtime.driver, lt, state=RUNNING, message=message,
                        container_id=container_id, restarts=restarts,
                        health=HEALTH_STARTING if has_health else None)

    async def _ended(self, doc: Mapping[str, Any], lt: LocalTask | None, exit_code: int | None, message: str,
                     *, failed: bool, health: str | None = None) -> None:
        """The task's container is gone: report it, or (cut off) schedule a restart in place."""
        task_id = str(doc["task_id"])
        driver = driver_of(doc)
        restarts = lt.restarts if lt is not None else 0
        policy = RestartPolicy.from_doc((doc.get("spec") or {}).get("restart"))
        if self.cut_off and policy.allows(failed, restarts):
            self._schedule_restart(task_id, driver, lt, policy, message, exit_code)
            return
        state = FAILED if failed else COMPLETE
        self._set_state(task_id, driver, lt, state=state, message=message, exit_code=exit_code,
                        restartable=True, health=health)

    def _schedule_restart(self, task_id: str, driver: str, lt: LocalTask | None, policy: RestartPolicy,
                          message: str, exit_code: int | None) -> None:
        restarts = lt.restarts if lt is not None else 0
        backoff = min(self.settings.local_restart_backoff_max_s,
                      self.settings.local_restart_backoff_s * 2 ** min(restarts, 30))
        delay = policy.delay_s + backoff
        lt = self._set_state(task_id, driver, lt, state=RESTARTING, message=message, exit_code=exit_code,
                             restartable=True)
        lt.restart_at = self.clock() + delay
        log.info("task %s %s; no manager answers, so it is restarted in place in %.1f s",
                 task_id, message, delay)
        self._poke_later(delay, task_id)

    async def _restart_due(self, doc: Mapping[str, Any], lt: LocalTask, mine: list[Container],
                           runtime: ContainerRuntime) -> bool:
        for c in mine:
            await self._remove(c)
        if mine:
            return True
        if not self.cut_off:
            # A manager answers again before the restart: the leader decides (a new task).
            failed = lt.exit_code != 0
            state = FAILED if failed else COMPLETE
            self._set_state(lt.task_id, lt.driver, lt, state=state, exit_code=lt.exit_code)
            return False
        if lt.restart_at is None:
            lt.restart_at = self.clock()  # restarted worker: the delay was waited out before
        wait = lt.restart_at - self.clock()
        if wait > 0:
            self._poke_later(wait, lt.task_id)
            return False
        await self._start(doc, lt, runtime, restart=True)
        return True

    def _maybe_restart_final(self, doc: Mapping[str, Any], lt: LocalTask) -> bool:
        """Cut off, a task that ended before the managers heard about it may still be restarted in place
        (its final state is only queued; the restart replaces it in the queue)."""
        if not (lt.restartable and lt.state in (COMPLETE, FAILED) and self.cut_off):
            return False
        if self.cache.pending_state(lt.task_id) != lt.state:
            return False  # a manager has it already: the leader replaces the task
        policy = RestartPolicy.from_doc((doc.get("spec") or {}).get("restart"))
        if not policy.allows(lt.state == FAILED, lt.restarts):
            return False
        self._schedule_restart(lt.task_id, lt.driver, lt, policy, lt.message, lt.exit_code)
        return True

    # -- containers -------------------------------------------------------------------------------

    async def _discard(self, container: Container, doc: Mapping[str, Any] | None) -> None:
        """Stop (if running) and remove one container of this node."""
        await self._stop_monitor(container.task_id, container.container_id)
        runtime = self.runtimes.get(container.driver)
        if runtime is None:
            self.containers.pop(container.container_id, None)
            return
        if container.running:
            if doc is not None:
                timeout = stop_timeout(doc, self.settings.stop_timeout_s)
            else:
                timeout = self._stop_timeouts.get(container.task_id, self.settings.stop_timeout_s)
            log.info("task %s: stopping container %s", container.task_id, container.container_id[:12])
            self._forget(container.container_id)  # its exit event is this stop
            await runtime.stop(container.container_id, timeout)
        await self._remove(container)

    async def _remove(self, container: Container) -> None:
        await self._stop_monitor(container.task_id, container.container_id)
        runtime = self.runtimes.get(container.driver)
        self._forget(container.container_id)
        if runtime is not None:
            await runtime.remove(container.container_id)
        self.containers.pop(container.container_id, None)
        if container.task_id not in self.assignments:
            self._stop_timeouts.pop(container.task_id, None)

    def _forget(self, container_id: str) -> None:
        self._gone[container_id] = None
        while len(self._gone) > _GONE_KEEP:
            del self._gone[next(iter(self._gone))]

    async def _stop_monitor(self, task_id: str, container_id: str | None = None) -> None:
        """Stop the task's health checks (only if they watch `container_id`, when given)."""
        monitor = self._monitors.get(task_id)
        if monitor is None or (container_id is not None and monitor.container_id != container_id):
            return
        del self._monitors[task_id]
        await monitor.stop()

    # -- local view -------------------------------------------------------------------------------

    def _set_state(
        self,
        task_id: str,
        driver: str,
        lt: LocalTask | None,
        *,
        state: str,
        message: str | None = None,
        container_id: str | None = None,
        restarts: int | None = None,
        exit_code: int | None = None,
        restartable: bool = False,
        health: str | None = None,
    ) -> LocalTask:
        """The task's new state: its local view, saved, and (unless it is RESTARTING, which the leader
        never hears of) reported as that view now says, in one worker.db transaction."""
        if lt is None:
            lt = LocalTask(task_id, driver, None, state)
        lt.state = state
        lt.driver = driver
        if message is not None:
            lt.message = message
        if container_id is not None:
            lt.container_id = container_id
        if restarts is not None:
            lt.restarts = restarts
        if state != RESTARTING:
            lt.restart_at = None
        lt.exit_code = exit_code if state in (COMPLETE, FAILED, RESTARTING) else None
        lt.restartable = restartable
        self.local[task_id] = lt
        if state in TERMINAL:  # its container is gone (a restart in place writes them again)
            self.secrets.release(task_id)
        if state == RESTARTING:
            self.cache.put_local(lt)
        else:
            update = StatusUpdate(task_id, state, lt.message, self.wall(), lt.container_id, lt.exit_code,
                                  health)
            self.statuses.report(update, lt)
        return lt

    def _drop_local(self, task_id: str) -> None:
        self.local.pop(task_id, None)
        self.cache.drop_local(task_id)
        self.secrets.release(task_id)

    def _log_source(self, request: Mapping[str, Any]) -> tuple[ContainerRuntime | None, str | None]:
        """The runtime and container of a log request's task (the one the leader named, else the
        task's current one)."""
        container_id = request.get("container_id")
        known = self.containers.get(str(container_id)) if container_id else None
        if known is not None:
            return self.runtimes.get(known.driver), known.container_id
        lt = self.local.get(str(request.get("task_id") or ""))
        if lt is None or lt.container_id is None:
            return None, None
        return self.runtimes.get(lt.driver), lt.container_id
