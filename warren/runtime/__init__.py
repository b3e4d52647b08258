"""Container runtimes: what runs a worker's tasks (see base.py for the protocol).

`open_runtimes` picks them for `--runtime auto|docker|process`; the worker serves each service with
the runtime whose `driver` its spec names.
"""

from __future__ import annotations

import os

from warren.config import RUNTIMES, RuntimeSettings
from warren.errors import ConfigError
from warren.runtime.base import ContainerRuntime

# Process-runtime task directories, under the worker's data dir.
PROCESS_TASKS_DIR = "tasks"


def docker_available(timeout_s: float | None = None) -> bool:
    """Whether a Docker Engine (DOCKER_HOST or the default socket) answers a ping within `timeout_s`
    (default RuntimeSettings.docker_ping_timeout_s). Blocks for at most about that long."""
    from warren.runtime.docker import ping_engine  # the Docker SDK only when Docker is asked about

    return ping_engine(timeout_s if timeout_s is not None else RuntimeSettings().docker_ping_timeout_s)


def open_runtimes(
    kind: str,
    *,
    cluster_id: str,
    node: str,
    data_dir: str,
    settings: RuntimeSettings | None = None,
) -> list[ContainerRuntime]:
    """The runtimes of a worker: `auto` = Docker if an engine answers, plus processes; `docker` =
    Docker only (ConfigError if no engine answers); `process` = processes only, their task
    directories under `<data_dir>/tasks`. Blocks while it pings the engine."""
    settings = settings if settings is not None else RuntimeSettings()
    if kind not in RUNTIMES:
        raise ConfigError(f"runtime must be one of {', '.join(RUNTIMES)}, got {kind!r}")
    runtimes: list[ContainerRuntime] = []
    if kind in ("auto", "docker"):
        if docker_available(settings.docker_ping_timeout_s):
            from warren.runtime.docker import DockerRuntime

            runtimes.append(DockerRuntime(cluster_id, node, settings=settings))
        elif kind == "docker":
            raise ConfigError(
                "runtime docker: the Docker Engine does not answer (is it running, and may this user "
                "use its socket? set DOCKER_HOST for a non-default one), or use --runtime process"
            )
    if kind in ("auto", "process"):
        from warren.runtime.process import ProcessRuntime

        base_dir = os.path.join(data_dir, PROCESS_TASKS_DIR)
        runtimes.append(ProcessRuntime(cluster_id, node, base_dir, settings=settings))
    return runtimes
