"""What a TASK document (docs/worker-protocol.md) asks of the worker: the runtime's TaskRun, the
driver, the stop timeout, and the restart policy the worker applies itself while cut off."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from warren.runtime.base import PortMapping, RuntimeStartError, TaskRun
from warren.spec import service as typed
from warren.spec import validate
from warren.spec.service import field_default


@dataclass(frozen=True, slots=True)
class RestartPolicy:
    """The service's restart policy, as the worker applies it to a task cut off from the managers
    (connected, a restart is a new task the leader creates under the same policy)."""

    condition: str = field_default(typed.RestartPolicy, "condition")  # any | on-failure | none
    delay_s: float = field_default(typed.RestartPolicy, "delay_s")
    max_attempts: int = 0  # 0: no limit

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any] | None) -> RestartPolicy:
        doc = doc or {}
        return cls(
            condition=str(doc.get("condition") or field_default(typed.RestartPolicy, "condition")),
            delay_s=float(doc.get("delay_s") or field_default(typed.RestartPolicy, "delay_s")),
            max_attempts=int(doc.get("max_attempts") or 0),
        )

    def allows(self, failed: bool, restarts: int) -> bool:
        """Whether a task that ended (`failed`: not a clean exit 0) after `restarts` local restarts
        is started again."""
        if self.condition == "none" or (self.condition == "on-failure" and not failed):
            return False
        return self.max_attempts <= 0 or restarts < self.max_attempts


# An env variable's name (as the API's models.EnvKey).
_ENV_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,255}", re.ASCII)


def check_spec(spec: Mapping[str, Any]) -> None:
    """Defence in depth at the worker: the manager's API checked the spec already, but what reaches a
    runtime (Docker, execve) is checked again here, so a spec from an older manager or a corrupt store
    never hands the engine a bad image or a NUL in an argument. RuntimeStartError (the task fails with
    that message) names the field and never repeats the value."""
    image = spec.get("image")
    if image is not None:
        problem = validate.image_problem(str(image))
        if problem is not None:
            raise RuntimeStartError(f"image: not a valid image reference: {problem}")
    health = spec.get("health")
    args = [("command", spec.get("command") or ())]
    if isinstance(health, Mapping):
        args.append(("health.cmd", health.get("cmd") or ()))
    for field, values in args:
        for i, arg in enumerate(values):
            where = validate.control_char(str(arg), multiline=True)
            if where is not None:
                raise RuntimeStartError(f"{field}[{i}]: a control character ({where})")
    for key, value in (spec.get("env") or {}).items():
        if _ENV_KEY.fullmatch(str(key)) is None:
            raise RuntimeStartError("env: a variable name that is not [A-Za-z_][A-Za-z0-9_]*")
        where = validate.control_char(str(value), multiline=True)
        if where is not None:
            raise RuntimeStartError(f"env[{key}]: a control character ({where})")


def task_run(
    doc: Mapping[str, Any], node: str, default_stop_timeout_s: float, secrets_dir: str | None = None
) -> TaskRun:
    """What the runtime needs to start a TASK document's container (`secrets_dir`: where its secrets
    were written, warren.worker.secrets). RuntimeStartError if the spec fails `check_spec`."""
    spec: Mapping[str, Any] = doc.get("spec") or {}
    check_spec(spec)
    task_id = str(doc["task_id"])
    service_name = str(doc.get("service_name") or doc.get("service_id") or "")
    slot = doc.get("slot")
    env = {str(k): str(v) for k, v in (spec.get("env") or {}).items()}
    env.update(WARREN_TASK_ID=task_id, WARREN_SERVICE=service_name, WARREN_NODE=node)
    if slot is not None:
        env["WARREN_SLOT"] = str(slot)
    resources: Mapping[str, Any] = spec.get("resources") or {}
    command = spec.get("command")
    return TaskRun(
        task_id=task_id,
        service_id=str(doc.get("service_id") or ""),
        service_name=service_name,
        slot=int(slot) if slot is not None else None,
        image=str(spec.get("image") or ""),
        command=[str(a) for a in command] if command else None,
        env=env,
        publish=tuple(
            PortMapping(int(p["host"]), int(p["container"]), str(p.get("protocol") or "tcp"))
            for p in spec.get("publish") or ()
        ),
        cpus=float(resources["cpus"]) if resources.get("cpus") is not None else None,
        memory=int(resources["memory"]) if resources.get("memory") is not None else None,
        stop_timeout_s=stop_timeout(doc, default_stop_timeout_s),
        secrets_dir=secrets_dir,
    )


def stop_timeout(doc: Mapping[str, Any] | None, default_s: float) -> float:
    """The service's stop timeout, else the worker's (WorkerSettings.stop_timeout_s)."""
    spec = (doc or {}).get("spec") or {}
    value = spec.get("stop_timeout_s")
    return float(value) if value else default_s


def driver_of(doc: Mapping[str, Any]) -> str:
    return str((doc.get("spec") or {}).get("driver") or field_default(typed.ServiceSpec, "driver"))


def exit_message(exit_code: int | None, detail: str) -> str:
    """The message of a task whose container exited: "exited with status N[: what the runtime said]"."""
    if exit_code is None:  # the runtime could not learn it (an adopted process); it may say why
        return f"exited: {detail}" if detail else "exited (status unknown)"
    text = f"exited with status {exit_code}"
    return f"{text}: {detail}" if detail else text
