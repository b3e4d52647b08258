"""Rolling restart of every manager with SIGTERM under a continuous write load: nothing acknowledged is
lost, and a leader hands leadership over before it exits."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

import httpx

from tests.integration.managers import ManagerCluster, ManagerProc, api, service_names
from warren.testing.wait import eventually

# One write is given up (and the test fails) after trying for this long across all managers; seconds.
GIVE_UP_S = 30.0


@dataclass
class RetryingWriter:
    """Creates services one after another; each is retried on 503 or a connection error against the
    managers in turn until acknowledged. A 409 after an ambiguous attempt means an earlier attempt
    committed: the service exists but does not count as acknowledged."""

    managers: list[ManagerProc]
    acked: list[str] = field(default_factory=list)
    ambiguous: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    retries: int = 0
    stop: threading.Event = field(default_factory=threading.Event)

    def has_acked(self, count: int) -> bool:
        return len(self.acked) >= count

    def run(self) -> None:
        clients = [api(m.api_addr, timeout=10) for m in self.managers]
        target = 0
        try:
            i = 0
            while not self.stop.is_set():
                target = self._write(f"rr-{i:05d}", clients, target)
                i += 1
        finally:
            for client in clients:
                client.close()

    def _write(self, name: str, clients: list[httpx.Client], target: int) -> int:
        deadline = threading.Event()
        timer = threading.Timer(GIVE_UP_S, deadline.set)
        timer.start()
        maybe_applied = False
        try:
            while not deadline.is_set():
                try:
                    response = clients[target].post("/v1/services", json={"name": name, "image": "nginx"})
                except httpx.HTTPError:
                    maybe_applied = (
                        True  # the request may have reached the leader before the connection broke
                    )
                else:
                    if response.status_code == 201:
                        self.acked.append(name)
                        return target
                    if response.status_code == 409 and maybe_applied:
                        self.ambiguous.append(name)
                        return target
                    if response.status_code != 503:
                        self.failures.append(f"{name}: {response.status_code} {response.text}")
                        return target
                    maybe_applied = True  # "not committed within 5 s ... may still be applied later"
                self.retries += 1
                target = (target + 1) % len(clients)
                if target == 0:
                    self.stop.wait(0.05)  # client backoff after a full round of managers
            self.failures.append(f"{name}: not acknowledged within {GIVE_UP_S} s")
            return target
        finally:
            timer.cancel()


def test_rolling_sigterm_restart_loses_no_acknowledged_write(
    make_managers: Callable[..., ManagerCluster],
) -> None:
    c = make_managers()
    managers = c.form(3)
    writer = RetryingWriter(managers)
    thread = threading.Thread(target=writer.run, name="writer", daemon=True)
    thread.start()
    handovers = 0
    try:
        eventually(lambda: len(writer.acked) >= 20, 30, "20 acknowledged writes before the first restart")
        for m in managers:
            leader = c.leader()
            was_leader = leader is m
            term = leader.info()["raft"]["term"]
            assert m.stop() == 0, f"{m.label} exited non-zero on SIGTERM\n{m.log_tail()}"
            log = m.errors()
            assert "manager stopped" in log, m.log_tail()
            if was_leader:
                handovers += 1
                # The leader hands over before it exits: the one it names leads, one term later.
                match = re.search(r"leadership handed to raft id (\d+)", log)
                assert match, f"{m.label} led but logged no hand-over\n{m.log_tail()}"
                others = [o for o in managers if o is not m]
                new = c.leader(among=others)
                info = new.info()
                assert info["leader"]["raft_id"] == int(match.group(1)), (info["leader"], match.group(0))
                assert info["raft"]["term"] == term + 1, (info["raft"], term)
            m.restart()
            assert "Raft consensus resumed (3 managers)" in m.output(), m.output()
            more = partial(writer.has_acked, len(writer.acked) + 10)
            eventually(more, 30, f"10 more writes after {m.label} restarted")
    finally:
        writer.stop.set()
        thread.join(GIVE_UP_S + 15)
    assert not thread.is_alive()
    print(f"writes: {len(writer.acked)} acked, {len(writer.ambiguous)} ambiguous, {writer.retries} retries")
    assert handovers >= 1, "no manager was leader when it was stopped"  # m1 leads at first
    assert not writer.failures, writer.failures[:5]
    assert len(writer.acked) >= 50

    # Every acknowledged write is on every manager.
    leader = c.leader()
    state = set(service_names(c.wait_same_services(managers, leader)))
    lost = [n for n in writer.acked if n not in state]
    assert not lost, f"{len(lost)} acknowledged writes lost, e.g. {lost[:5]}"
    assert len(state) == len(writer.acked) + len(writer.ambiguous)
