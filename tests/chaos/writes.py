"""A blind-write workload whose every acknowledged write must survive: configs created one by one.

Each attempt creates a config under a name never used before, through a manager chosen at random. A
201 is an acknowledgement: that config must be in the final state. A timeout, a dropped connection or a
503 is unknown (it may or may not have been committed), a connection never made is not a write at all,
and a 4xx is a definite refusal (none is expected).
Configs do not wake the orchestrator, so the state grows without adding planner work.
"""

from __future__ import annotations

import base64
import random
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import httpx

from tests.integration.managers import ManagerProc, api

PAYLOAD = base64.b64encode(b"chaos\n").decode("ascii")
REQUEST_TIMEOUT_S = 2.0


@dataclass
class WriteLog:
    acked: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)
    unsent: int = 0  # connection refused or unreachable: nothing reached a manager
    ok_times: list[float] = field(default_factory=list)  # time.monotonic() of each acknowledgement


class ConfigWriter:
    """One thread creating configs `<prefix>-<n>` until stopped; use as a context manager."""

    def __init__(self, managers: Sequence[ManagerProc], seed: int, prefix: str = "acked") -> None:
        self.managers = list(managers)
        self.rng = random.Random(seed)
        self.prefix = prefix
        self.log = WriteLog()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="chaos-config-writer", daemon=True)

    def __enter__(self) -> ConfigWriter:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(REQUEST_TIMEOUT_S * 3)

    def _run(self) -> None:
        n = 0
        while not self._stop.is_set():
            n += 1
            name = f"{self.prefix}-{n}"
            m = self.rng.choice(self.managers)
            try:
                with api(m.api_addr, REQUEST_TIMEOUT_S) as client:
                    response = client.post("/v1/configs", json={"name": name, "data": PAYLOAD})
            except httpx.ConnectError:  # never sent: the manager is down or cut off from us
                self.log.unsent += 1
                continue
            except (httpx.HTTPError, OSError):
                self.log.unknown.append(name)
                continue
            if response.status_code == 201:
                self.log.acked.append(name)
                self.log.ok_times.append(time.monotonic())
            elif response.status_code >= 500:
                self.log.unknown.append(name)
            else:
                self.log.refused.append(f"{name}: {response.status_code} {response.text[:200]}")


def lost_writes(log: WriteLog, final_names: set[str]) -> list[str]:
    """Acknowledged configs missing from the final state."""
    return [name for name in log.acked if name not in final_names]
