"""One task's state machine: which step brings the task closer to what its assignment asks, given
its local view (worker.db) and its containers. The controller (controller.py) takes one step at a
time and does what the step asks of it; after swarmkit's exec.Do beside its Controller.

- desired running, no container: report `starting`, start it, report `running` (or `failed` with the
  runtime's reason; `rejected` if this worker has no runtime for its driver, or if its spec is not a
  valid one);
- desired shutdown: stop and remove its container, report `shutdown`;
- not assigned at all: stop and remove its container, report nothing (the leader is done with it);
- its container exited (or failed its health check): report `complete`/`failed` and remove the
  container. A restart is a new task the leader creates, not a local affair, with one exception:
  cut off from every manager, the task is started again in place (same task ID) under its restart
  policy, and its state is reported once a manager answers again.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from warren.runtime.base import ContainerRuntime
from warren.spec.service import RestartPolicy, TaskSpec
from warren.spec.taskstate import COMPLETE, FAILED, REJECTED, RUNNING, SHUTDOWN, STARTING, TERMINAL
from warren.worker.cache import LocalTask
from warren.worker.containers import Container
from warren.worker.health import UNHEALTHY
from warren.worker.taskspec import exit_message

if TYPE_CHECKING:  # the controller calls next_step; the step calls the controller's verbs
    from warren.worker.controller import TaskController

log = logging.getLogger(__name__)

# Local state of a task waiting to be restarted in place (never reported: the leader still has it
# running).
RESTARTING = "restarting"


async def next_step(ctl: TaskController) -> bool:
    """One step towards what the task's assignment asks; True if it did something (look again)."""
    task_id = ctl.task_id
    host = ctl.host
    doc = host.assignment(task_id)
    lt = ctl.local
    mine = host.containers.of_task(task_id)

    if doc is None:  # not (or no longer) this node's: remove silently
        if not host.authoritative:
            return False  # nobody said yet; the first session answer decides
        if mine:
            await ctl.discard(mine[0])
            return True
        await ctl.stop_health()
        if lt is not None:
            ctl.drop_local()
        return False

    if doc.get("desired_state") != RUNNING:
        if mine:
            await ctl.discard(mine[0])
            return True
        await ctl.stop_health()
        if lt is None or lt.state not in TERMINAL:
            ctl.set_state(ctl.driver, lt, state=SHUTDOWN, message="stopped as asked")
        return False

    if lt is not None and lt.state in TERMINAL:
        if mine:  # left over (a stop that failed earlier)
            await ctl.discard(mine[0])
            return True
        return _maybe_restart_final(ctl, lt)

    spec = ctl.spec
    if spec is None:  # nothing of it may reach a runtime
        ctl.set_state(ctl.driver, lt, state=REJECTED, message=ctl.spec_problem)
        return False
    driver = spec.driver
    runtime = host.runtimes.get(driver)
    if runtime is None:
        have = ", ".join(sorted(host.runtimes)) or "none"
        message = f"this worker has no {driver} runtime (it has: {have})"
        ctl.set_state(driver, lt, state=REJECTED, message=message)
        return False

    live = [c for c in mine if c.running]
    if live:
        keep = next((c for c in live if lt is not None and c.container_id == lt.container_id), live[0])
        extra = [c for c in mine if c is not keep]
        if extra:  # an older container of a task restarted in place, or a duplicate
            await ctl.discard(extra[0])
            return True
        return await _keep_running(ctl, spec, lt, keep, runtime)

    if lt is not None and lt.state == RESTARTING:
        return await _restart_due(ctl, doc, spec, lt, mine, runtime)

    if mine or (lt is not None and lt.container_id is not None):
        # Its container exited (or vanished while this worker was not looking).
        last = next((c for c in mine if lt is not None and c.container_id == lt.container_id),
                    mine[0] if mine else None)
        for c in mine:
            await ctl.remove(c)
        if last is None:
            await _ended(ctl, spec, lt, None, "its container disappeared", failed=True)
        else:
            await _ended(ctl, spec, lt, last.exit_code, exit_message(last.exit_code, last.message),
                         failed=last.exit_code != 0)
        return True

    if lt is None and doc.get("state") in (STARTING, RUNNING):
        # The leader has it running here, but this worker has no trace of it (worker.db lost).
        message = "the worker has no container for this task (its local state was lost)"
        ctl.set_state(driver, lt, state=FAILED, message=message)
        return False

    await ctl.start(doc, spec, lt, runtime, restart=False)
    return True


async def _keep_running(
    ctl: TaskController, spec: TaskSpec, lt: LocalTask | None, container: Container,
    runtime: ContainerRuntime,
) -> bool:
    task_id = container.task_id
    if lt is None or lt.container_id != container.container_id or lt.state != RUNNING:
        # Adopted: left running by a previous run of this worker (or started by a step that failed
        # before it could report it).
        ports = await ctl.ingress_ports(runtime, spec, container.container_id)
        ctl.set_state(runtime.driver, lt, state=RUNNING, message="running",
                      container_id=container.container_id, ports=ports)
        log.info("task %s: adopted its running container %s", task_id, container.container_id[:12])
        return True
    reason = ctl.take_unhealthy(container.container_id)
    if reason is not None:
        await ctl.discard(container)
        await _ended(ctl, spec, lt, None, f"health check failed: {reason}", failed=True, health=UNHEALTHY)
        return True
    if spec.health is not None:
        await ctl.watch_health(container.container_id, spec.health, runtime)
    return False


async def _ended(
    ctl: TaskController, spec: TaskSpec, lt: LocalTask | None, exit_code: int | None, message: str,
    *, failed: bool, health: str | None = None,
) -> None:
    """The task's container is gone: report it, or (cut off) schedule a restart in place."""
    driver = spec.driver
    restarts = lt.restarts if lt is not None else 0
    policy = spec.restart
    if ctl.host.cut_off and policy.allows(failed, restarts):
        _schedule_restart(ctl, driver, lt, policy, message, exit_code)
        return
    state = FAILED if failed else COMPLETE
    ctl.set_state(driver, lt, state=state, message=message, exit_code=exit_code,
                  restartable=True, health=health)


def _schedule_restart(ctl: TaskController, driver: str, lt: LocalTask | None, policy: RestartPolicy,
                      message: str, exit_code: int | None) -> None:
    settings = ctl.host.settings
    restarts = lt.restarts if lt is not None else 0
    backoff = min(settings.local_restart_backoff_max_s,
                  settings.local_restart_backoff_s * 2 ** min(restarts, 30))
    delay = policy.delay_s + backoff
    lt = ctl.set_state(driver, lt, state=RESTARTING, message=message, exit_code=exit_code,
                       restartable=True)
    lt.restart_at = ctl.host.clock() + delay
    log.info("task %s %s; no manager answers, so it is restarted in place in %.1f s",
             ctl.task_id, message, delay)
    ctl.host.poke_later(delay, ctl.task_id)


async def _restart_due(ctl: TaskController, doc: Mapping[str, Any], spec: TaskSpec, lt: LocalTask,
                       mine: list[Container], runtime: ContainerRuntime) -> bool:
    for c in mine:
        await ctl.remove(c)
    if mine:
        return True
    if not ctl.host.cut_off:
        # A manager answers again before the restart: the leader decides (a new task).
        failed = lt.exit_code != 0
        state = FAILED if failed else COMPLETE
        ctl.set_state(lt.driver, lt, state=state, exit_code=lt.exit_code)
        return False
    clock = ctl.host.clock
    if lt.restart_at is None:
        lt.restart_at = clock()  # restarted worker: the delay was waited out before
    wait = lt.restart_at - clock()
    if wait > 0:
        ctl.host.poke_later(wait, lt.task_id)
        return False
    await ctl.start(doc, spec, lt, runtime, restart=True)
    return True


def _maybe_restart_final(ctl: TaskController, lt: LocalTask) -> bool:
    """Cut off, a task that ended before the managers heard about it may still be restarted in place
    (its final state is only queued; the restart replaces it in the queue)."""
    if not (lt.restartable and lt.state in (COMPLETE, FAILED) and ctl.host.cut_off):
        return False
    if ctl.host.cache.pending_state(lt.task_id) != lt.state:
        return False  # a manager has it already: the leader replaces the task
    if ctl.spec is None:
        return False
    policy = ctl.spec.restart
    if not policy.allows(lt.state == FAILED, lt.restarts):
        return False
    _schedule_restart(ctl, lt.driver, lt, policy, lt.message, lt.exit_code)
    return True
