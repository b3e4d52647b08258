"""One task's controller: drives a task through its states on this worker, one step at a time (never
two at once for the same task; the worker runs any number of tasks' steps in parallel), and holds
what belongs to the task alone: its local view (worker.db), its health checks, its stop timeout.
After swarmkit's agent/exec Controller and task manager: the steps (steps.py) decide, the
controller does (start, stop and remove a container, record and report a state).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from warren.config import WorkerSettings
from warren.errors import NotFoundError, StorageError
from warren.runtime.base import ContainerRuntime, RuntimeStartError, RuntimeUnavailableError
from warren.spec.ports import port_key
from warren.spec.service import HealthCheck, TaskSpec
from warren.spec.taskstate import COMPLETE, FAILED, RUNNING, STARTING, TERMINAL
from warren.worker.cache import LocalTask, StatusUpdate, WorkerCache
from warren.worker.configs import TaskConfigs
from warren.worker.containers import Container, Containers
from warren.worker.health import STARTING as HEALTH_STARTING
from warren.worker.health import UNHEALTHY, HealthMonitor
from warren.worker.reporter import StatusReporter
from warren.worker.secrets import TaskSecrets
from warren.worker.steps import RESTARTING, next_step
from warren.worker.taskspec import host_access, mount_points, port_mappings, spec_of, task_run
from warren.worker.volumes import VolumeKeeper

log = logging.getLogger(__name__)


class TaskHost(Protocol):
    """What a task's controller uses of its worker (warren.worker.loop.WorkerLoop)."""

    node: str
    settings: WorkerSettings
    runtimes: Mapping[str, ContainerRuntime]
    containers: Containers
    cache: WorkerCache
    statuses: StatusReporter
    secrets: TaskSecrets
    volumes: VolumeKeeper
    configs: TaskConfigs
    clock: Callable[[], float]
    wall: Callable[[], float]
    # Whether the assignments are something a manager said: only then may containers of tasks
    # missing from them be removed.
    authoritative: bool

    @property
    def cut_off(self) -> bool: ...

    @property
    def discovery_env(self) -> Mapping[str, str]:
        """What process tasks are told of service names (WARREN_DNS, WARREN_HOSTS)."""
        ...

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
        # Its assignment's spec, decoded once per assignment; None if it has none, or if the spec is
        # not a valid one (`spec_problem` says why: the task is rejected, nothing of it runs).
        self.spec: TaskSpec | None = None
        self.spec_problem = ""
        # Its stop timeout, kept while it has a container: a task whose service was removed is no
        # longer in the assignments, and its container must still get its own grace, not the default.
        self.stop_timeout_s: float | None = None
        self._monitor: HealthMonitor | None = None
        self._unhealthy: tuple[str, str] | None = None  # (container, reason)
        self._stepping: asyncio.Task[None] | None = None
        self._redo = False

    def assigned(self, doc: Mapping[str, Any]) -> None:
        """The task's assignment as a manager (or worker.db) gave it."""
        try:
            self.spec, self.spec_problem = spec_of(doc), ""
        except RuntimeStartError as exc:
            self.spec, self.spec_problem = None, str(exc)
        self.stop_timeout_s = None if self.spec is None else self.spec.stop_timeout_s

    @property
    def driver(self) -> str:
        """The runtime its spec asks for ("" without a valid spec: nothing of it ever runs)."""
        return "" if self.spec is None else self.spec.driver

    def secrets(self) -> list[str]:
        """The secrets its spec names."""
        return [] if self.spec is None else self.spec.secrets

    def configs(self) -> list[str]:
        """The configs its spec names."""
        return [] if self.spec is None else [ref.name for ref in self.spec.config_list]

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

    # -- its health checks ------------------------------------------------------------------------

    def on_health(self, task_id: str, container_id: str, health: str, reason: str) -> None:
        """A health check's verdict on the task's container."""
        lt = self.local
        if lt is None or lt.container_id != container_id or lt.state != RUNNING:
            return
        # Reported at once, an unhealthy verdict too: the leader takes the task out of the service's
        # endpoints (names, ingress) now, not once its container has stopped (up to stop_timeout_s).
        message = f"health check failed: {reason}" if health == UNHEALTHY else lt.message
        self.host.statuses.report(StatusUpdate(task_id, RUNNING, message, self.host.wall(), container_id,
                                               health=health))
        if health == UNHEALTHY:
            self._unhealthy = (container_id, reason)
            self.host.poke(task_id)

    async def watch_health(self, container_id: str, spec: HealthCheck, runtime: ContainerRuntime) -> None:
        """Run the task's health checks against `container_id` (from now on, if they watched another)."""
        monitor = self._monitor
        if monitor is None or monitor.container_id != container_id:
            await self.stop_health()
            monitor = HealthMonitor(self.task_id, container_id, spec, runtime, self.on_health,
                                    clock=self.host.clock)
            self._monitor = monitor
            monitor.start()

    def take_unhealthy(self, container_id: str) -> str | None:
        """Why the health checks failed `container_id`, once (None if they did not)."""
        unhealthy = self._unhealthy
        if unhealthy is None or unhealthy[0] != container_id:
            return None
        self._unhealthy = None
        return unhealthy[1]

    async def stop_health(self, container_id: str | None = None) -> None:
        """Stop the task's health checks (only if they watch `container_id`, when given)."""
        monitor = self._monitor
        if monitor is None or (container_id is not None and monitor.container_id != container_id):
            return
        self._monitor = None
        await monitor.stop()

    # -- its steps --------------------------------------------------------------------------------

    async def _converge(self) -> None:
        task_id = self.task_id
        try:
            while await next_step(self):
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

    # -- its container --------------------------------------------------------------------------

    async def start(self, doc: Mapping[str, Any], spec: TaskSpec, lt: LocalTask | None,
                    runtime: ContainerRuntime, *, restart: bool) -> None:
        """Start the task's container (again, with `restart`: in place, while cut off)."""
        task_id = self.task_id
        host = self.host
        restarts = lt.restarts if lt is not None else 0
        if restart:
            restarts += 1
        else:
            lt = self.set_state(runtime.driver, lt, state=STARTING, message="starting")
        try:
            settings = host.settings
            devices = host_access(spec.options, settings.allow_privileged, settings.allow_devices)
            mounts = mount_points(spec.mount_list, settings.allow_binds)
            secrets_dir = host.secrets.prepare(task_id, spec.secrets, shared=runtime.driver == "docker")
            configs = host.configs.prepare(task_id, spec.config_list)
            discovery = host.discovery_env if runtime.driver == "process" else {}
            run = task_run(doc, spec, host.node, secrets_dir, devices, mounts, configs, discovery)
            container_id = await runtime.start(run)
        except (RuntimeStartError, RuntimeUnavailableError) as exc:
            if spec.volumes:  # it may have made its volume before failing
                host.volumes.changed()
            message = str(exc) or type(exc).__name__
            log.warning("task %s could not start: %s", task_id, message)
            self.set_state(runtime.driver, lt, state=FAILED, message=message, restarts=restarts)
            return
        host.containers.started(Container(task_id, container_id, runtime.driver, True))
        if spec.volumes:  # a volume it mounts may be new on this node
            host.volumes.changed()
        # Should the engine not answer now, the step is tried again: the running container is then
        # adopted, and its ports read again.
        ports = await self.ingress_ports(runtime, spec, container_id)
        if restart:
            assert lt is not None
            message = f"restarted in place by the worker ({lt.message}; local restart {restarts})"
            log.info("task %s: %s", task_id, message)
        else:
            message = "started"
        self.set_state(runtime.driver, lt, state=RUNNING, message=message,
                       container_id=container_id, restarts=restarts,
                       health=HEALTH_STARTING if spec.health is not None else None, ports=ports)

    async def ingress_ports(
        self, runtime: ContainerRuntime, spec: TaskSpec, container_id: str
    ) -> dict[str, int] | None:
        """Where this node reaches the task's ingress publishes, as its `running` update reports them
        ({"P": hostport}); None if it has none. A container already gone has none to report."""
        mappings = [m for m in port_mappings(spec) if m.ingress]
        if not mappings:
            return None
        try:
            found = await runtime.ingress_ports(container_id, mappings)
        except NotFoundError:
            found = {}
        published = {m.host for m in mappings}
        ports = {port_key(p): found[p] for p in sorted(found) if p in published and 1 <= found[p] <= 65535}
        missing = published - found.keys()
        if missing:
            log.warning("task %s: no host port for its ingress port(s) %s: no ingress connection reaches it "
                        "there", self.task_id, ", ".join(map(str, sorted(missing))))
        return ports

    async def discard(self, container: Container) -> None:
        """Stop (if running) and remove one container of the task."""
        host = self.host
        await self.stop_health(container.container_id)
        runtime = host.runtimes.get(container.driver)
        if runtime is None:
            host.containers.drop(container.container_id)
            return
        if container.running:
            timeout = host.settings.stop_timeout_s if self.stop_timeout_s is None else self.stop_timeout_s
            log.info("task %s: stopping container %s", container.task_id, container.container_id[:12])
            host.containers.forget(container.container_id)  # its exit event is this stop
            await runtime.stop(container.container_id, timeout)
        await self.remove(container)

    async def remove(self, container: Container) -> None:
        """Remove one (stopped) container of the task."""
        host = self.host
        await self.stop_health(container.container_id)
        runtime = host.runtimes.get(container.driver)
        host.containers.forget(container.container_id)
        if runtime is not None:
            await runtime.remove(container.container_id)
        host.containers.drop(container.container_id)
        if host.assignment(self.task_id) is None:
            self.stop_timeout_s = None

    # -- its local view ---------------------------------------------------------------------------

    def set_state(
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
        ports: Mapping[str, int] | None = None,
    ) -> LocalTask:
        """The task's new state: its local view, saved, and (unless it is RESTARTING, which the leader
        never hears of) reported as that view now says, in one worker.db transaction (`ports`: with
        a `running` update, where its ingress publishes are reached)."""
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
            host.configs.release(task_id)
        if state == RESTARTING:
            host.cache.put_local(lt)
        else:
            update = StatusUpdate(task_id, state, lt.message, host.wall(), lt.container_id, lt.exit_code,
                                  health, ports)
            host.statuses.report(update, lt)
        return lt

    def drop_local(self) -> None:
        """The task is not this node's any more: its local view, secrets and configs go."""
        self.local = None
        self.host.cache.drop_local(self.task_id)
        self.host.secrets.release(self.task_id)
        self.host.configs.release(self.task_id)
