"""Container timings measured the same way for every orchestrator: from the Docker Engine's events.

Warren and Docker Swarm run their containers on the same engine, so "a replacement is running" and
"N replicas are running" mean the same thing for both: the engine reported a `start` event for a
container carrying the orchestrator's service label. The events are read in a thread and stamped with
this process's monotonic clock when they arrive (delivery takes well under a millisecond on one host).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import docker


@dataclass(frozen=True, slots=True)
class Started:
    container_id: str
    at: float  # time.monotonic() when the event arrived


class StartWatch:
    """`start` events of containers whose labels include `label` ("key=value"), from now on."""

    def __init__(self, client: docker.DockerClient, label: str) -> None:
        self.client = client
        self.label = label
        self.events: queue.Queue[Started] = queue.Queue()
        self._stream: Any = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> StartWatch:
        self._stream = self.client.events(
            decode=True, filters={"type": "container", "event": "start", "label": self.label}
        )
        self._thread = threading.Thread(target=self._read, name="docker-events", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._stream is not None:
            self._stream.close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _read(self) -> None:
        try:
            for event in self._stream:
                self.events.put(Started(str(event.get("id", "")), time.monotonic()))
        except Exception:  # the stream is closed by __exit__; anything else ends the watch too
            return

    def next_start(self, deadline: float, unless: Callable[[str], bool] = lambda _: False) -> Started | None:
        """The next start event (skipping containers for which `unless` is true) before `deadline`."""
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            try:
                started = self.events.get(timeout=left)
            except queue.Empty:
                return None
            if not unless(started.container_id):
                return started

    def starts(self, count: int, deadline: float) -> list[Started]:
        """Up to `count` start events of distinct containers, before `deadline`."""
        seen: dict[str, Started] = {}
        while len(seen) < count:
            started = self.next_start(deadline, unless=lambda cid: cid in seen)
            if started is None:
                break
            seen[started.container_id] = started
        return list(seen.values())


def running_ids(client: docker.DockerClient, label: str) -> list[str]:
    # The low-level call: the high-level one inspects each container and fails on one that just went.
    return [c["Id"] for c in client.api.containers(filters={"label": label, "status": "running"})]


def any_container(client: docker.DockerClient, label: str) -> bool:
    return bool(client.api.containers(all=True, filters={"label": label}))


def wait_running(client: docker.DockerClient, label: str, count: int, timeout_s: float) -> list[str]:
    """IDs of `count` running containers with `label`, once there are that many (polls; set-up only)."""
    deadline = time.monotonic() + timeout_s
    while True:
        ids = running_ids(client, label)
        if len(ids) >= count:
            return ids
        if time.monotonic() >= deadline:
            raise TimeoutError(
                f"{len(ids)} of {count} containers labelled {label} running after {timeout_s:g} s"
            )
        time.sleep(0.05)


def crash_trials(
    client: docker.DockerClient,
    label: str,
    trials: int,
    give_up_s: float,
    settle: Callable[[], None],
    min_uptime_s: float,
) -> list[dict[str, Any]]:
    """Kill (SIGKILL) one running container with `label` per trial; time until a new one starts.

    `settle` runs before each trial and returns once the service is back at its full count; then the
    trial waits `min_uptime_s`, so every crash is one of a container that had been running a while,
    not the next crash of a crash loop (which orchestrators deliberately slow down with a backoff).
    """
    results: list[dict[str, Any]] = []
    for _ in range(trials):
        settle()
        time.sleep(min_uptime_s)
        victims = running_ids(client, label)
        if not victims:
            results.append({"ok": False, "error": "no running container to kill"})
            continue
        victim = victims[0]
        with StartWatch(client, label) as watch:
            t0 = time.monotonic()
            client.api.kill(victim)
            started = watch.next_start(t0 + give_up_s, unless=victim.__eq__)
        if started is None:
            results.append({"ok": False, "error": f"no replacement started within {give_up_s:g} s"})
        else:
            results.append({"ok": True, "seconds": started.at - t0, "container": started.container_id[:12]})
    return results


def create_trial(
    client: docker.DockerClient, label: str, count: int, give_up_s: float, create: Callable[[], object]
) -> dict[str, Any]:
    """Time from `create()` (the orchestrator's service-create call) to the start event of the last of
    `count` containers with `label`."""
    with StartWatch(client, label) as watch:
        t0 = time.monotonic()
        create()
        started = watch.starts(count, t0 + give_up_s)
    if len(started) < count:
        return {"ok": False, "error": f"{len(started)} of {count} started"}
    return {"ok": True, "seconds": max(s.at for s in started) - t0}
