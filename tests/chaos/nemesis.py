"""The faults a chaos run injects into a live cluster of managers, one at a time, each healed before the next.

Every fault is a real one: SIGKILL and SIGSTOP of manager processes, iptables rules inside the managers'
network namespaces (tests/integration/netns.py), a tmpfs under a follower's Raft log filled to the last
byte. A fault is chosen by the run's seeded RNG, injected, held for a random time, healed, and the run
waits until the cluster is whole again (every manager serving, all naming one leader) before the next:
the time that takes is the fault's recovery.
"""

from __future__ import annotations

import contextlib
import errno
import os
import random
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tests.chaos.tasks import ChaosWorker
from tests.integration.managers import ManagerCluster, ManagerProc
from tests.integration.netns import NetnsLab

# The kinds, each with its weight in a long run. Leader kills dominate (the issue asks for 200 in 30
# minutes); partitions come next (50).
KINDS: dict[str, float] = {
    "leader-kill": 0.60,
    "leader-isolated": 0.06,
    "split": 0.06,
    "flapping-link": 0.06,
    "one-way-loss": 0.06,
    "leader-stop": 0.05,
    "manager-kill": 0.04,
    "all-killed": 0.03,
    "disk-full": 0.02,
    "worker-lost": 0.02,
}
PARTITIONS = ("leader-isolated", "split", "flapping-link", "one-way-loss")
FULL_DISK_MB = 256  # the tmpfs under one follower's Raft directory
FILLER = "chaos-filler"
POISONED = "raft log poisoned"  # the Raft core's line when its log hit an i/o error (rust/src/log_store.rs)
RECOVERY_TIMEOUT_S = 60.0


class NoRecovery(AssertionError):
    """The cluster was not whole again within RECOVERY_TIMEOUT_S of a fault's healing."""


@dataclass
class Fault:
    """One injected fault: what, on whom, and when (time.monotonic, the workload's clock)."""

    kind: str
    target: str
    start: float
    healed: float = 0.0
    recovered: float = 0.0
    note: str = ""

    def as_dict(self, t0: float) -> dict[str, object]:
        return {
            "kind": self.kind,
            "target": self.target,
            "at_s": round(self.start - t0, 3),
            "held_s": round(self.healed - self.start, 3),
            "recovery_s": round(self.recovered - self.healed, 3),
            "note": self.note,
        }


Heal = Callable[[], None]


@dataclass
class Nemesis:
    """Injects faults into `cluster`, whose managers run in `lab`'s namespaces (manager i on host i+1)."""

    cluster: ManagerCluster
    lab: NetnsLab
    rng: random.Random
    full_disk: ManagerProc | None = None  # the manager whose Raft dir is a small tmpfs
    workers: list[ChaosWorker] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    unexpected_exits: list[str] = field(default_factory=list)

    # -- choosing -------------------------------------------------------------------------------------

    def possible(self) -> list[str]:
        kinds = [k for k in KINDS if k != "split" or len(self.cluster.managers) >= 5]
        if self.full_disk is None:
            kinds.remove("disk-full")
        if not self.workers:
            kinds.remove("worker-lost")
        return kinds

    def choose(self) -> str:
        kinds = self.possible()
        return self.rng.choices(kinds, weights=[KINDS[k] for k in kinds])[0]

    # -- one fault ------------------------------------------------------------------------------------

    def run(self, kind: str) -> Fault:
        """Inject `kind`, hold it, heal it, and wait until the cluster is whole again."""
        leader = self.cluster.leader(timeout=RECOVERY_TIMEOUT_S)
        while kind == "disk-full" and leader is self.full_disk:
            # The fault is a follower's full disk (a leader's ends as a kill): kill it out of the lead.
            self.run("leader-kill")
            leader = self.cluster.leader(timeout=RECOVERY_TIMEOUT_S)
        start = time.monotonic()
        target, heal, hold_s = getattr(self, "_" + kind.replace("-", "_"))(leader)
        fault = Fault(kind, target, start)
        self.faults.append(fault)
        print(f"chaos: {time.strftime('%H:%M:%S')} {kind} {target}", file=sys.stderr, flush=True)
        time.sleep(hold_s)  # the fault's duration: the time it is in force, not a wait for a condition
        heal()
        fault.healed = time.monotonic()
        self.recover()
        fault.recovered = time.monotonic()
        return fault

    def recover(self) -> None:
        """Until every manager serves and all name one leader; a manager that died on its own is noted
        and started again."""
        for m in self.cluster.managers:
            if not m.alive and not m.stopped:
                self.unexpected_exits.append(f"{m.label}: {m.exit_note()}")
                m.start()
        for m in self.cluster.managers:
            try:
                m.wait_started(RECOVERY_TIMEOUT_S)
            except AssertionError as exc:
                raise NoRecovery(f"{m.label} did not serve again: {exc}") from None
        try:
            self.cluster.leader(timeout=RECOVERY_TIMEOUT_S)
        except AssertionError as exc:
            raise NoRecovery(f"no agreed leader again: {exc}") from None
        for w in self.workers:
            if not w.worker.alive:
                self.unexpected_exits.append(f"{w.label}: {w.worker.exit_note()}")
                w.ensure_running()

    # -- the kinds ------------------------------------------------------------------------------------

    def _host(self, m: ManagerProc) -> int:
        return self.cluster.managers.index(m) + 1

    def _hold(self, low: float, high: float) -> float:
        return self.rng.uniform(low, high)

    def _restart(self, *managers: ManagerProc) -> Heal:
        def heal() -> None:
            for m in managers:
                if not m.alive:
                    m.start()  # recover() waits until it serves

        return heal

    def _leader_kill(self, leader: ManagerProc) -> tuple[str, Heal, float]:
        leader.kill()
        return leader.label, self._restart(leader), self._hold(0.2, 1.0)

    def _manager_kill(self, leader: ManagerProc) -> tuple[str, Heal, float]:
        m = self.rng.choice(self.cluster.managers)
        m.kill()
        return m.label, self._restart(m), self._hold(0.2, 2.0)

    def _all_killed(self, leader: ManagerProc) -> tuple[str, Heal, float]:
        for m in self.cluster.managers:
            m.kill()
        return "all", self._restart(*self.cluster.managers), self._hold(0.2, 1.0)

    def _leader_stop(self, leader: ManagerProc) -> tuple[str, Heal, float]:
        leader.freeze()
        return leader.label, leader.thaw, self._hold(1.0, 3.0)

    def _leader_isolated(self, leader: ManagerProc) -> tuple[str, Heal, float]:
        self.lab.isolate(self._host(leader))
        return leader.label, self.lab.heal, self._hold(1.5, 4.0)

    def _split(self, leader: ManagerProc) -> tuple[str, Heal, float]:
        """Two managers (the leader among them half the time) apart from the other three."""
        others = [m for m in self.cluster.managers if m is not leader]
        with_leader = self.rng.random() < 0.5
        minority = [leader, self.rng.choice(others)] if with_leader else self.rng.sample(others, 2)
        majority = [self._host(m) for m in self.cluster.managers if m not in minority]
        for m in minority:
            self.lab.isolate(self._host(m), from_hosts=majority)
        return "+".join(m.label for m in minority), self.lab.heal, self._hold(1.5, 4.0)

    def _flapping_link(self, leader: ManagerProc) -> tuple[str, Heal, float]:
        """The link between the leader and one follower goes down and up every 100-500 ms."""
        follower = self.rng.choice([m for m in self.cluster.managers if m is not leader])
        a, b = self._host(leader), self._host(follower)
        deadline = time.monotonic() + self._hold(2.0, 4.0)
        while time.monotonic() < deadline:
            self.lab.isolate(a, from_hosts=[b])
            time.sleep(self.rng.uniform(0.1, 0.5))
            self.lab.heal(a)
            time.sleep(self.rng.uniform(0.1, 0.5))
        return f"{leader.label}<->{follower.label}", self.lab.heal, 0.0

    def _one_way_loss(self, leader: ManagerProc) -> tuple[str, Heal, float]:
        """A manager (the leader half the time) loses a share of what the others send it."""
        m = leader if self.rng.random() < 0.5 else self.rng.choice(self.cluster.managers)
        share = self.rng.choice((0.3, 0.6, 1.0))
        self.lab.drop_inbound(self._host(m), share)
        return f"{m.label} in:{share:.0%}", self.lab.heal, self._hold(1.5, 4.0)

    def _disk_full(self, leader: ManagerProc) -> tuple[str, Heal, float]:
        m = self.full_disk
        assert m is not None
        filler = m.data_dir / "raft" / FILLER
        offset = m.log_size()
        fill(filler)

        def heal() -> None:
            """Free the disk; a manager that hit the full disk stops (as it must): wait for its exit,
            then start it again."""
            filler.unlink(missing_ok=True)
            if POISONED in m.log_since(offset):
                m.wait_exit(RECOVERY_TIMEOUT_S)
            if not m.alive:
                m.start()

        return m.label, heal, self._hold(1.0, 3.0)

    def _worker_lost(self, leader: ManagerProc) -> tuple[str, Heal, float]:
        """While the cluster fails over (its leader killed), a worker's agent killed or the worker cut
        off from every other host, for less than the managers' grace for a silent worker."""
        w = self.rng.choice(self.workers)
        leader.kill()
        restart = self._restart(leader)
        if self.rng.random() < 0.5:
            w.kill()
            how, back = "killed", w.ensure_running
        else:
            w.cut_off()
            how, back = "cut off", w.reconnect

        def heal() -> None:
            back()
            restart()

        return f"{w.label} {how}, {leader.label} killed", heal, self._hold(0.5, 3.0)


def fill(path: Path) -> int:
    """Write zeros to `path` until its file system is full; the bytes written."""
    written, size = 0, 1 << 20
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        while size >= 512:
            try:
                written += os.write(fd, b"\0" * size)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                size //= 2  # the last few blocks
    finally:
        os.close(fd)
    return written


@contextlib.contextmanager
def small_disk(path: Path, size_mb: int = FULL_DISK_MB) -> Iterator[Path]:
    """A tmpfs of `size_mb` mounted at `path` for the block; unmounted (lazily) after."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mb}m,mode=0700", "tmpfs", str(path)],
                   check=True, capture_output=True)  # fmt: skip
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False, capture_output=True)
