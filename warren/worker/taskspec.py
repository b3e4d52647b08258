"""What a TASK document (docs/worker-protocol.md) asks of the worker: its spec, decoded once into a
TaskSpec (which checks again what reaches a runtime: the image grammar, no NUL in an argument), the
host access it needs (privileges, devices, bind mounts) checked against what this worker allows, and the
runtime's TaskRun made from it."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from warren.errors import InvalidError
from warren.runtime.base import DeviceMapping, MountPoint, PortMapping, RuntimeStartError, TaskRun
from warren.spec.container import ContainerOptions, under
from warren.spec.mounts import Mount
from warren.spec.service import TaskSpec, decode
from warren.worker.configs import TaskConfigFiles


def spec_of(doc: Mapping[str, Any]) -> TaskSpec:
    """The spec of a TASK document. Defence in depth: the manager's API checked it already, but a spec
    from an older manager or a corrupt store must not hand the engine a bad image or a NUL in an
    argument; RuntimeStartError names the field and never repeats the value."""
    try:
        return decode(TaskSpec, doc.get("spec") or {})
    except InvalidError as exc:
        raise RuntimeStartError(str(exc)) from None


def host_access(
    options: ContainerOptions, allow_privileged: bool, allow_devices: Sequence[str]
) -> tuple[DeviceMapping, ...]:
    """The task's devices with their real paths, if this worker allows what the task asks (the scheduler
    checked the paths as written; here symlinks are resolved, on both sides, so a link out of an
    allowed directory is refused); RuntimeStartError saying what is not allowed otherwise."""
    if options.privileged and not allow_privileged:
        raise RuntimeStartError(
            "privileged tasks are not allowed on this worker (worker start --allow-privileged)"
        )
    roots = [os.path.realpath(root) for root in allow_devices]
    devices = []
    for device in options.devices:
        real = os.path.realpath(device.host)
        if not under(real, roots):
            shown = device.host if real == device.host else f"{device.host} (resolves to {real})"
            raise RuntimeStartError(
                f"device {shown} is not allowed on this worker (worker start --allow-device)"
            )
        devices.append(DeviceMapping(real, device.container or device.host, device.permissions))
    return tuple(devices)


def mount_points(mounts: Sequence[Mount], allow_binds: Sequence[str]) -> tuple[MountPoint, ...]:
    """The task's mounts for its runtime, each bind's source with its real path, if this worker allows
    it (as host_access does for devices: symlinks resolved on both sides, so a link inside an allowed
    directory that points out of it is refused) and it exists; RuntimeStartError saying why otherwise."""
    roots = [os.path.realpath(root) for root in allow_binds]
    points = []
    for i, mount in enumerate(mounts):
        source = mount.source
        if mount.type == "bind" and source is not None:
            real = os.path.realpath(source)
            shown = source if real == source else f"{source} (resolves to {real})"
            if not under(real, roots):
                raise RuntimeStartError(
                    f"mounts[{i}]: bind mount of {shown} is not allowed on this worker "
                    "(worker start --allow-bind)"
                )
            if not os.path.exists(real):
                raise RuntimeStartError(f"mounts[{i}]: bind mount of {shown}: no such file or directory "
                                        "on this worker")
            source = real
        points.append(MountPoint(mount.type, mount.target, source, mount.read_only, mount.size))
    return tuple(points)


def task_run(
    doc: Mapping[str, Any],
    spec: TaskSpec,
    node: str,
    secrets_dir: str | None = None,
    devices: tuple[DeviceMapping, ...] = (),
    mounts: tuple[MountPoint, ...] = (),
    configs: TaskConfigFiles | None = None,
    discovery: Mapping[str, str] | None = None,
) -> TaskRun:
    """What the runtime needs to start a TASK document's container, `spec` being its spec (`secrets_dir`:
    where its secrets were written, warren.worker.secrets; `devices`: its devices, from host_access;
    `mounts`: its mounts, from mount_points; `configs`: the directory and files its configs were written
    to, warren.worker.configs; `discovery`: how it finds service names, WARREN_DNS and WARREN_HOSTS for
    a process task)."""
    task_id = str(doc["task_id"])
    service_name = str(doc.get("service_name") or doc.get("service_id") or "")
    slot = doc.get("slot")
    env = dict(spec.env)
    env.update(WARREN_TASK_ID=task_id, WARREN_SERVICE=service_name, WARREN_NODE=node)
    if slot is not None:
        env["WARREN_SLOT"] = str(slot)
    env.update(discovery or {})
    return TaskRun(
        task_id=task_id,
        service_id=str(doc.get("service_id") or ""),
        service_name=service_name,
        slot=int(slot) if slot is not None else None,
        image=spec.image,
        command=list(spec.command) if spec.command else None,
        env=env,
        publish=port_mappings(spec),
        cpus=spec.resources.cpus,
        memory=spec.resources.memory,
        stop_timeout_s=spec.stop_timeout_s,
        secrets_dir=secrets_dir,
        options=spec.options,
        devices=devices,
        mounts=mounts,
        configs_dir=None if configs is None else configs.directory,
        config_files=() if configs is None else configs.files,
    )


def port_mappings(spec: TaskSpec) -> tuple[PortMapping, ...]:
    """The spec's published ports as the runtime takes them (an unset mode is host mode)."""
    return tuple(PortMapping(p.host, p.container, p.protocol, p.ingress) for p in spec.publish)


def exit_message(exit_code: int | None, detail: str) -> str:
    """The message of a task whose container exited: "exited with status N[: what the runtime said]"."""
    if exit_code is None:  # the runtime could not learn it (an adopted process); it may say why
        return f"exited: {detail}" if detail else "exited (status unknown)"
    text = f"exited with status {exit_code}"
    return f"{text}: {detail}" if detail else text
