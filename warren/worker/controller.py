"""One task's controller: drives a task through its states on this worker, one step at a time (never
two at once for the same task; the worker runs any number of tasks' steps in parallel). After
swarmkit's agent/exec controller and task manager.

Each step looks at the task's assignment, its local view (worker.db) and its containers, and does
the one thing that brings them closer:

- desired running, no container: report `starting`, start it, report `running` (or `failed` with the
  runtime's reason; `rejected` if this worker has no runtime for its driver);
- desired shutdown: stop and remove its container, report `shutdown`;
- not assigned at all: stop and remove its container, report nothing (the leader is done with it);
- its container exited (or failed its health check): report `complete`/`failed` and remove the
  container. A restart is a new task the leader creates, not a local affair, with one exception:
  cut off from every manager, the task is started again in place (same task ID) under its restart
  policy, and its state is reported once a manager answers again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from warren.config import WorkerSettings
from warren.errors import StorageError
from warren.runtime.base import ContainerRuntime, RuntimeStartError, RuntimeUnavailableError
from warren.spec.taskstate import COMPLETE, FAILED, REJECTED, RUNNING, SHUTDOWN, STARTING, TERMINAL
from warren.worker.cache import LocalTask, StatusUpdate, WorkerCache
from warren.worker.containers import Container, Containers
from warren.worker.health import STARTING as HEALTH_STARTING
from warren.worker.health import UNHEALTHY, HealthMonitor, HealthSpec
from warren.worker.reporter import StatusReporter
from warren.worker.secrets import TaskSecrets, secret_names
from warren.worker.taskspec import RestartPolicy, driver_of, exit_message, stop_timeout, task_run

log = logging.getLogger(__name__)

# Local state of a task waiting to be restarted in place (never reported: the leader still has it
# running).
RESTARTING = "restarting"


class TaskHost(Protocol):
    """What a task's controller uses of its worker (warren.worker.loop.WorkerLoop)."""

    node: str
    settings: WorkerSettings
    runtimes: Mapping[str, ContainerRuntime]
    containers: Containers
    cache: WorkerCache
    statuses: StatusReporter
    secrets: TaskSecrets
    clock: Callable[[], float]
    wall: Callable[[], float]
    # Whether the assignments are something a manager said: only then may containers of tasks
    # missing from them be removed.
    authoritative: bool

    @property
    def cut_off(self) -> bool: ...

    def assignment(self, task_id: str) -> Mapping[str, Any] | None:
        """The task's assignment (None: not, or no longer, this node's)."""
        ...

    def poke(self, task_id: str) -> None: ...

    def poke_later(self, delay_s: float, task_id: str) -> None: ...

    def step_done(self, task_id: str) -> None:
        """The task's steps are done for now (the worker may forget an idle controller)."""
        ...

    def fail(self) -> None:
        """worker.db broke: the worker stops."""
        ...


class TaskController:
    """The controller of task `task_id`; `local` is its view from worker.db (None if it has none)."""

    def __init__(self, task_id: str, host: TaskHost, local: LocalTask | None = None) -> None:
        self.task_id = task_id
        self.host = host
        self.local = local
        # Its stop timeout, kept while it has a container: a task whose service was removed is no
        # longer in the assignments, and its container must still get its own grace, not the default.
        self.stop_timeout_s: float | None = None
        self._monitor: HealthMonitor | None = None
        self._unhealthy: tuple[str, str] | None = None  # (container, reason)
        self._stepping: asyncio.Task[None] | None = None
        self._redo = False

    def assigned(self, doc: Mapping[str, Any]) -> None:
        """The task's assignment as a manager (or worker.db) gave it."""
        self.stop_timeout_s = stop_timeout(doc, self.host.settings.stop_timeout_s)

    @property
    def idle(self) -> bool:
        """Nothing to do or keep: no assignment, local view, container, health check or step."""
        return (
            self._stepping is None
            and self.local is None
            and self._monitor is None
            and self.host.assignment(self.task_id) is None
            and not self.host.containers.of_task(self.task_id)
        )

    def poke(self) -> None:
        """Look at the task again: now, or once the step under way is done."""
        if self._stepping is not None:
            self._redo = True
        else:
            self._stepping = asyncio.create_task(self._converge(), name=f"task-{self.task_id}")

    def cancel(self) -> asyncio.Task[None] | None:
        """Cancel the step under way (the worker stops; the container keeps running): the asyncio task
        to wait for, None if there is none."""
        if self._stepping is not None:
            self._stepping.cancel()
        return self._stepping

    async def stop_health(self) -> None:
        """Stop the task's health checks."""
        await self._stop_monitor()

    def on_health(self, task_id: str, container_id: str, health: str, reason: str) -> None:
        """A health check's verdict on the task's container."""
        lt = self.local
        if lt is None or lt.container_id != container_id or lt.state != RUNNING:
            return
        if health == UNHEALTHY:
            self._unhealthy = (container_id, reason)
            self.host.poke(task_id)
            return
        update = StatusUpdate(task_id, RUNNING, lt.message, self.host.wall(), container_id, health=health)
        self.host.statuses.report(update)

    # -- steps ------------------------------------------------------------------------------------

    async def _converge(self) -> None:
        task_id = self.task_id
        try:
            while await self._step():
                pass
        except (RuntimeUnavailableError, OSError) as exc:
            log.warning("task %s: the runtime failed (%s); trying again", task_id, exc)
            self.host.poke_later(self.host.settings.retry_max_delay_s, task_id)
        except StorageError as exc:
            log.critical("worker.db failed: %s; the worker stops", exc)
            self.host.fail()
        except asyncio.CancelledError:
            raise
        except Exception:  # a task boundary: one task's trouble must not stop the others
            log.exception("task %s: reconciling failed; trying again", task_id)
            self.host.poke_later(self.host.settings.retry_max_delay_s, task_id)
        finally:
            self._stepping = None
            if self._redo:
                self._redo = False
                self.host.poke(task_id)
            else:
                self.host.step_done(task_id)

    async def _step(self) -> bool:
        """One step towards what the task's assignment asks; True if it did something (look again)."""
        task_id = self.task_id
        host = self.host
        doc = host.assignment(task_id)
        lt = self.local
        mine = host.containers.of_task(task_id)

        if doc is None:  # not (or no longer) this node's: remove silently
            if not host.authoritative:
                return False  # nobody said yet; the first session answer decides
            if mine:
                await self._discard(mine[0], None)
                return True
            await self._stop_monitor()
            if lt is not None:
                self._drop_local()
            return False

        if doc.get("desired_state") != RUNNING:
            if mine:
                await self._discard(mine[0], doc)
                return True
            await self._stop_monitor()
            if lt is None or lt.state not in TERMINAL:
                self._set_state(driver_of(doc), lt, state=SHUTDOWN, message="stopped as asked")
            return False

        if lt is not None and lt.state in TERMINAL:
            if mine:  # left over (a stop that failed earlier)
                await self._discard(mine[0], doc)
                return True
            return self._maybe_restart_final(doc, lt)

        driver = driver_of(doc)
        runtime = host.runtimes.get(driver)
        if runtime is None:
            have = ", ".join(sorted(host.runtimes)) or "none"
            message = f"this worker has no {driver} runtime (it has: {have})"
            self._set_state(driver, lt, state=REJECTED, message=message)
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
            self._set_state(driver, lt, state=FAILED, message=message)
            return False

        await self._start(doc, lt, runtime, restart=False)
        return True

    async def _keep_running(
        self, doc: Mapping[str, Any], lt: LocalTask | None, container: Container, runtime: ContainerRuntime
    ) -> bool:
        task_id = container.task_id
        if lt is None or lt.container_id != container.container_id or lt.state != RUNNING:
            # Adopted: left running by a previous run of this worker.
            lt = self._set_state(runtime.driver, lt, state=RUNNING, message="running",
                                 container_id=container.container_id)
            log.info("task %s: adopted its running container %s", task_id, container.container_id[:12])
            return True
        unhealthy = self._unhealthy
        if unhealthy is not None and unhealthy[0] == container.container_id:
            self._unhealthy = None
            await self._discard(container, doc)
            await self._ended(doc, lt, None, f"health check failed: {unhealthy[1]}", failed=True,
                              health=UNHEALTHY)
            return True
        spec = HealthSpec.from_doc((doc.get("spec") or {}).get("health"))
        monitor = self._monitor
        if spec is not None and (monitor is None or monitor.container_id != container.container_id):
            await self._stop_monitor()
            monitor = HealthMonitor(task_id, container.container_id, spec, runtime, self.on_health,
                                    clock=self.host.clock)
            self._monitor = monitor
            monitor.start()
        return False

    async def _start(self, doc: Mapping[str, Any], lt: LocalTask | None, runtime: ContainerRuntime,
                     *, restart: bool) -> None:
        task_id = self.task_id
        host = self.host
        restarts = lt.restarts if lt is not None else 0
        if restart:
            restarts += 1
        else:
            lt = self._set_state(runtime.driver, lt, state=STARTING, message="starting")
        try:
            secrets_dir = host.secrets.prepare(task_id, secret_names(doc), shared=runtime.driver == "docker")
            run = task_run(doc, host.node, host.settings.stop_timeout_s, secrets_dir)
            container_id = await runtime.start(run)
        except (RuntimeStartError, RuntimeUnavailableError) as exc:
            message = str(exc) or type(exc).__name__
            log.warning("task %s could not start: %s", task_id, message)
            self._set_state(runtime.driver, lt, state=FAILED, message=message, restarts=restarts)
            return
        host.containers.started(Container(task_id, container_id, runtime.driver, True))
        if restart:
            assert lt is not None
            message = f"restarted in place by the worker ({lt.message}; local restart {restarts})"
            log.info("task %s: %s", task_id, message)
        else:
            message = "started"
        has_health = HealthSpec.from_doc((doc.get("spec") or {}).get("health")) is not None
        self._set_state(runtime.driver, lt, state=RUNNING, message=message,
                        container_id=container_id, restarts=restarts,
                        health=HEALTH_STARTING if has_health else None)

    async def _ended(self, doc: Mapping[str, Any], lt: LocalTask | None, exit_code: int | None, message: str,
                     *, failed: bool, health: str | None = None) -> None:
        """The task's container is gone: report it, or (cut off) schedule a restart in place."""
        driver = driver_of(doc)
        restarts = lt.restarts if lt is not None else 0
        policy = RestartPolicy.from_doc((doc.get("spec") or {}).get("restart"))
        if self.host.cut_off and policy.allows(failed, restarts):
            self._schedule_restart(driver, lt, policy, message, exit_code)
            return
        state = FAILED if failed else COMPLETE
        self._set_state(driver, lt, state=state, message=message, exit_code=exit_code,
                        restartable=True, health=health)

    def _schedule_restart(self, driver: str, lt: LocalTask | None, policy: RestartPolicy,
                          message: str, exit_code: int | None) -> None:
        settings = self.host.settings
        restarts = lt.restarts if lt is not None else 0
        backoff = min(settings.local_restart_backoff_max_s,
                      settings.local_restart_backoff_s * 2 ** min(restarts, 30))
        delay = policy.delay_s + backoff
        lt = self._set_state(driver, lt, state=RESTARTING, message=message, exit_code=exit_code,
                             restartable=True)
        lt.restart_at = self.host.clock() + delay
        log.info("task %s %s; no manager answers, so it is restarted in place in %.1f s",
                 self.task_id, message, delay)
        self.host.poke_later(delay, self.task_id)

    async def _restart_due(self, doc: Mapping[str, Any], lt: LocalTask, mine: list[Container],
                           runtime: ContainerRuntime) -> bool:
        for c in mine:
            await self._remove(c)
        if mine:
            return True
        if not self.host.cut_off:
            # A manager answers again before the restart: the leader decides (a new task).
            failed = lt.exit_code != 0
            state = FAILED if failed else COMPLETE
            self._set_state(lt.driver, lt, state=state, exit_code=lt.exit_code)
            return False
        clock = self.host.clock
        if lt.restart_at is None:
            lt.restart_at = clock()  # restarted worker: the delay was waited out before
        wait = lt.restart_at - clock()
        if wait > 0:
            self.host.poke_later(wait, lt.task_id)
            return False
        await self._start(doc, lt, runtime, restart=True)
        return True

    def _maybe_restart_final(self, doc: Mapping[str, Any], lt: LocalTask) -> bool:
        """Cut off, a task that ended before the managers heard about it may still be restarted in place
        (its final state is only queued; the restart replaces it in the queue)."""
        if not (lt.restartable and lt.state in (COMPLETE, FAILED) and self.host.cut_off):
            return False
        if self.host.cache.pending_state(lt.task_id) != lt.state:
            return False  # a manager has it already: the leader replaces the task
        policy = RestartPolicy.from_doc((doc.get("spec") or {}).get("restart"))
        if not policy.allows(lt.state == FAILED, lt.restarts):
            return False
        self._schedule_restart(lt.driver, lt, policy, lt.message, lt.exit_code)
        return True

    # -- its containers ---------------------------------------------------------------------------

    async def _discard(self, container: Container, doc: Mapping[str, Any] | None) -> None:
        """Stop (if running) and remove one container of the task."""
        host = self.host
        await self._stop_monitor(container.container_id)
        runtime = host.runtimes.get(container.driver)
        if runtime is None:
            host.containers.drop(container.container_id)
            return
        if container.running:
            if doc is not None:
                timeout = stop_timeout(doc, host.settings.stop_timeout_s)
            elif self.stop_timeout_s is not None:
                timeout = self.stop_timeout_s
            else:
                timeout = host.settings.stop_timeout_s
            log.info("task %s: stopping container %s", container.task_id, container.container_id[:12])
            host.containers.forget(container.container_id)  # its exit event is this stop
            await runtime.stop(container.container_id, timeout)
        await self._remove(container)

    async def _remove(self, container: Container) -> None:
        host = self.host
        await self._stop_monitor(container.container_id)
        runtime = host.runtimes.get(container.driver)
        host.containers.forget(container.container_id)
        if runtime is not None:
            await runtime.remove(container.container_id)
        host.containers.drop(container.container_id)
        if host.assignment(self.task_id) is None:
            self.stop_timeout_s = None

    async def _stop_monitor(self, container_id: str | None = None) -> None:
        """Stop the task's health checks (only if they watch `container_id`, when given)."""
        monitor = self._monitor
        if monitor is None or (container_id is not None and monitor.container_id != container_id):
            return
        self._monitor = None
        await monitor.stop()

    # -- its local view ---------------------------------------------------------------------------

    def _set_state(
        self,
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
        task_id = self.task_id
        host = self.host
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
        self.local = lt
        if state in TERMINAL:  # its container is gone (a restart in place writes them again)
            host.secrets.release(task_id)
        if state == RESTARTING:
            host.cache.put_local(lt)
        else:
            update = StatusUpdate(task_id, state, lt.message, host.wall(), lt.container_id, lt.exit_code,
                                  health)
            host.statuses.report(update, lt)
        return lt

    def _drop_local(self) -> None:
        self.local = None
        self.host.cache.drop_local(self.task_id)
        self.host.secrets.release(self.task_id)
