"""Docker Swarm on the same engine, measured the same way as Warren (benches/containers.py).

A single-node swarm (`docker swarm init` on 127.0.0.1, left again afterwards if this run made it) runs
the same image as Warren's container benchmarks:

- container crash → replacement running: SIGKILL of a task's container → the engine's `start` event of
  its replacement, with Swarm's default restart delay (5 s) and with `--restart-delay 0s`;
- service create → all replicas running: the services API call → the last replica's `start` event.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from typing import Any

import docker
import docker.errors
from docker.types import RestartPolicy, ServiceMode

from benches.containers import any_container, crash_trials, create_trial, wait_running
from benches.stats import trial_row
from warren.config import OrchestratorSettings

log = logging.getLogger(__name__)

SERVICE_LABEL = "com.docker.swarm.service.name"
CRASH_EVENT = "SIGKILL of a task's container → the engine's start event of its replacement"
CREATE_EVENT = "service create API call → start event of the last replica"


@dataclass(frozen=True, slots=True)
class ContainerParams:
    """Shared by the Warren and the Swarm container benchmarks, so both do the same work."""

    image: str = "warren-busybox:latest"
    crash_trials: int = 10
    # Swarm's default restart delay is 5 s: fewer trials of it are enough to show it.
    crash_trials_default_delay: int = 3
    # Each crash trial kills a container that has run this long: longer than Warren's restart window
    # (config.OrchestratorSettings.restart_window_s), within which a repeated crash is backed off.
    min_uptime_s: float = OrchestratorSettings().restart_window_s + 1.0
    create_replicas: int = 20
    create_trials: int = 3
    give_up_s: float = 60.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def summary_row(
    scenario: str, key: str, what: str, event: str, samples: list[dict[str, Any]]
) -> dict[str, Any]:
    """The row of trials recorded as {"ok": True, "seconds": s} or {"ok": False, "error": why}."""
    ok = [s["seconds"] for s in samples if s.get("ok")]
    failed = [str(s.get("error")) for s in samples if not s.get("ok")]
    return trial_row(scenario, key, what, event, ok, failed)


class Swarm:
    """A single-node swarm for the run's duration."""

    def __init__(self, client: docker.DockerClient) -> None:
        self.client = client
        self.made_here = False
        self.services: list[Any] = []

    def __enter__(self) -> Swarm:
        state = self.client.info().get("Swarm", {}).get("LocalNodeState")
        if state != "active":
            self.client.swarm.init(advertise_addr="127.0.0.1", listen_addr="127.0.0.1:2377")
            self.made_here = True
        return self

    def __exit__(self, *exc: object) -> None:
        for service in self.services:
            try:
                service.remove()
            except docker.errors.APIError as err:
                log.warning("could not remove swarm service %s: %s", service.name, err)
        if self.made_here:
            self.client.swarm.leave(force=True)

    def service(self, name: str, image: str, replicas: int, restart_delay_s: float | None) -> Any:
        policy = None
        if restart_delay_s is not None:
            policy = RestartPolicy(condition="any", delay=int(restart_delay_s * 1e9))
        service = self.client.services.create(
            image,
            command=["sleep", "1000000"],
            name=name,
            mode=ServiceMode("replicated", replicas=replicas),
            restart_policy=policy,
            stop_grace_period=1_000_000_000,
        )
        self.services.append(service)
        return service

    def remove(self, service: Any) -> None:
        service.remove()
        self.services.remove(service)
        label = f"{SERVICE_LABEL}={service.name}"
        deadline = time.monotonic() + 60
        while any_container(self.client, label) and time.monotonic() < deadline:
            time.sleep(0.1)


def run(params: ContainerParams) -> dict[str, Any]:
    client = docker.from_env()
    rows: list[dict[str, Any]] = []
    results: dict[str, Any] = {}
    with Swarm(client) as swarm:
        for key, delay, trials, what in (
            ("default", None, params.crash_trials_default_delay, "Docker Swarm, default restart delay (5 s)"),
            ("delay0", 0.0, params.crash_trials, "Docker Swarm, --restart-delay 0s"),
        ):
            name = f"bench-crash-{key}"
            service = swarm.service(name, params.image, 1, delay)
            label = f"{SERVICE_LABEL}={name}"
            samples = crash_trials(
                client,
                label,
                trials,
                params.give_up_s,
                settle=lambda label=label: wait_running(client, label, 1, params.give_up_s),  # type: ignore[misc]
                min_uptime_s=params.min_uptime_s,
            )
            swarm.remove(service)
            results[f"crash_{key}"] = samples
            rows.append(summary_row("swarm", f"swarm/crash-{key}", what, CRASH_EVENT, samples))

        samples = []
        for trial in range(params.create_trials):
            name = f"bench-create-{trial}"
            created: list[Any] = []

            def create(name: str = name, created: list[Any] = created) -> None:
                created.append(swarm.service(name, params.image, params.create_replicas, 0.0))

            label = f"{SERVICE_LABEL}={name}"
            samples.append(create_trial(client, label, params.create_replicas, params.give_up_s, create))
            for service in created:
                swarm.remove(service)
        results["create"] = samples
        what = f"Docker Swarm, {params.create_replicas} replicas, one node"
        key = f"swarm/create-{params.create_replicas}"
        rows.append(summary_row("swarm", key, what, CREATE_EVENT, samples))
    return {"status": "ok", "error": None, "config": params.as_dict(), "results": results, "rows": rows}
