"""Container runtimes: what runs a worker's tasks (see base.py for the protocol).

`open_runtimes` picks them for `--runtime auto|docker|process|docker,process` (auto = docker: the
process runtime runs unconfined host commands, so it is offered only when named); the worker serves
each service with the runtime whose `driver` its spec names.
"""

from __future__ import annotations

import os

from warren.config import RUNTIMES, RuntimeSettings
from warren.errors import ConfigError
from warren.runtime.base import ContainerRuntime

# Process-runtime task directories, and its volumes, under the worker's data dir.
PROCESS_TASKS_DIR = "tasks"
PROCESS_VOLUMES_DIR = "volumes"


def docker_available(timeout_s: float | None = None) -> bool:
    """Whether a Docker Engine (DOCKER_HOST or the default socket) answers a ping within `timeout_s`
    (default RuntimeSettings.docker_ping_timeout_s). Blocks for at most about that long."""
    from warren.runtime.docker import ping_engine  # the Docker SDK only when Docker is asked about

    return ping_engine(timeout_s if timeout_s is not None else RuntimeSettings().docker_ping_timeout_s)


def drivers_of(kind: str) -> tuple[str, ...]:
    """The drivers a `--runtime` kind offers: `auto` and `docker` = Docker only; `process` = plain
    processes only; `docker,process` = both. The process runtime runs unconfined host commands as the
    worker's user, so it is never offered unless named (docs/security.md)."""
    if kind not in RUNTIMES:
        raise ConfigError(f"runtime must be one of {', '.join(RUNTIMES)}, got {kind!r}")
    if kind == "auto":
        return ("docker",)
    return tuple(kind.split(","))


def require_docker(kind: str, settings: RuntimeSettings | None = None) -> None:
    """ConfigError unless a Docker Engine answers (for a kind that offers Docker). Blocks while it pings."""
    settings = settings if settings is not None else RuntimeSettings()
    if "docker" in drivers_of(kind) and not docker_available(settings.docker_ping_timeout_s):
        raise ConfigError(
            f"runtime {kind}: the Docker Engine does not answer (is it running, and may this user use its "
            "socket? set DOCKER_HOST for a non-default one); to run tasks as unconfined host processes "
            "instead, start with --runtime process"
        )


def open_runtimes(
    kind: str,
    *,
    cluster_id: str,
    node: str,
    data_dir: str,
    settings: RuntimeSettings | None = None,
    ingress_ip: str | None = None,
) -> list[ContainerRuntime]:
    """The runtimes of a worker, in the order of `drivers_of(kind)` (ConfigError if Docker is offered
    and no engine answers); process task directories go under `<data_dir>/tasks`, its volumes under
    `<data_dir>/volumes`; Docker binds ingress replicas' ports on `ingress_ip` (None: every address).
    Blocks while it pings the engine."""
    settings = settings if settings is not None else RuntimeSettings()
    runtimes: list[ContainerRuntime] = []
    for driver in drivers_of(kind):
        if driver == "docker":
            require_docker(kind, settings)
            from warren.runtime.docker import DockerRuntime

            runtimes.append(DockerRuntime(cluster_id, node, settings=settings, ingress_ip=ingress_ip))
        else:
            from warren.runtime.process import ProcessRuntime

            base_dir = os.path.join(data_dir, PROCESS_TASKS_DIR)
            volumes_dir = os.path.join(data_dir, PROCESS_VOLUMES_DIR)
            runtimes.append(ProcessRuntime(cluster_id, node, base_dir, volumes_dir=volumes_dir,
                                           settings=settings))
    return runtimes
