"""The high-availability guide (the seed's HIGH-AVAILABILITY-GUIDE.md), walked in order as a new user
types it (issue 14 §6): form 3 managers (steps 1-5), lose the leader, lose a follower, use the WAN
timers, monitor, back up and recover.

The guide's commands are quoted below as written; only what one machine cannot give three managers is
changed. With network namespaces (root, `ip netns`) each manager has a host of its own, so the
commands keep the guide's ports and defaults (API 8080, `--listen-addr 0.0.0.0:8080`, Raft 7946,
metrics 127.0.0.1:9090) and only the guide's 192.168.1.1x addresses become the lab's; without them
every manager gets a loopback address with free ports (`--listen-addr`, `--raft-addr`,
`--metrics-addr` added). Each manager gets `--data-dir` (the guide's `sudo` would put all three in
/var/lib/warren), and `sudo` is dropped.

Where the guide says `systemctl stop warren-manager`, the test sends SIGTERM to the process the unit
runs (packaging/systemd/warren-manager.service: KillMode=process, no KillSignal=, so systemd sends
SIGTERM to `warren $WARREN_MANAGER_COMMAND $WARREN_MANAGER_FLAGS`), and `systemctl start` reruns that
command. The guide's backup copies `/var/lib/warren/data/warren.db`; in Warren that file is
`<data-dir>/warren.db`, a cache rebuilt from the snapshot and the Raft log at every start, so the walk
takes the equivalent docs/operations.md gives ("The guide's backup, in Warren"): the online
`warren cluster backup` plus the data key, or the whole data dir of a stopped manager.
"""

from __future__ import annotations

import configparser
import contextlib
import os
import re
import shlex
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.integration import managers as harness
from tests.integration.managers import DaemonProc, cli, parse_metrics
from tests.integration.netns import NetnsLab, unavailable_reason
from tests.integration.nodeproc import REPO_ROOT
from warren.testing.process import free_port
from warren.testing.wait import eventually

UNIT = REPO_ROOT / "packaging" / "systemd" / "warren-manager.service"
GUIDE_IPS = ("192.168.1.10", "192.168.1.11", "192.168.1.12")
# The guide's commands, as written (HIGH-AVAILABILITY-GUIDE.md, "Setting Up Multi-Manager Cluster").
STEP_1 = """sudo warren cluster init \\
  --advertise-addr 192.168.1.10:8080 \\
  --listen-addr 0.0.0.0:8080"""
STEP_2 = "warren cluster join-token manager --manager 192.168.1.10:8080"
STEP_3 = """sudo warren manager join \\
  --token SWMTKN-1-5k7j9h3f2d1s9a7k5l3n1m9p7r5t3v1x9z7b5d3f1h9j7k5 \\
  --manager 192.168.1.10:8080 \\
  --advertise-addr 192.168.1.11:8080"""
STEP_4 = STEP_3.replace("192.168.1.11", "192.168.1.12")
STEP_5 = "warren cluster info --manager 192.168.1.10:8080"
GUIDE_TOKEN = "SWMTKN-1-5k7j9h3f2d1s9a7k5l3n1m9p7r5t3v1x9z7b5d3f1h9j7k5"
# "7. Configure Appropriate Timeouts": adjust for WAN deployments.
WAN_TIMERS = """warren cluster init \\
  --raft-heartbeat-timeout 1s \\
  --raft-election-timeout 1s"""
# The guide's "Monitor Manager Health" metrics and the names Warren gives them (docs/operations.md).
GUIDE_METRICS = {
    "raft_leader": "warren_raft_leader",
    "raft_peers": "warren_raft_peers",
    "raft_commit_index": "warren_raft_commit_index",
    "raft_applied_index": "warren_raft_applied_index",
    "raft_last_contact": "warren_raft_last_contact_seconds",
}


@dataclass
class Host:
    """Where manager i of the guide runs: its address and API port, and how to run a command there."""

    index: int  # 1..3
    addr: str
    port: int
    prefix: list[str]
    # Loopback only: what one machine shared by three managers needs beyond the guide's flags.
    extra: list[str] = field(default_factory=list)
    metrics_url: str = "http://127.0.0.1:9090/metrics"

    @property
    def api(self) -> str:
        return f"{self.addr}:{self.port}"


@dataclass
class Walk:
    base: Path
    hosts: list[Host]
    literal_ports: bool  # namespaces: the guide's own ports and defaults
    procs: list[DaemonProc] = field(default_factory=list)
    commands: list[list[str]] = field(default_factory=list)  # each manager's argv (rerun = resume)

    def guide(self, text: str) -> list[str]:
        """A command of the guide as argv: `sudo` and line continuations dropped, the guide's
        addresses (and, on loopback, ports) replaced by this walk's."""
        text = text.replace("\\\n", " ")
        for ip, host in zip(GUIDE_IPS, self.hosts, strict=True):
            text = text.replace(f"{ip}:8080", host.api)
        if not self.literal_ports:
            text = text.replace("0.0.0.0:8080", f"0.0.0.0:{self.hosts[0].port}")
        argv = shlex.split(text)
        if argv[0] == "sudo":
            argv = argv[1:]
        assert argv[0] == "warren", argv
        return argv[1:]

    def daemon(self, i: int, argv: list[str], label: str | None = None) -> DaemonProc:
        """Start `warren ARGV` as manager i (1-based) with its own data dir; returns once it serves."""
        host = self.hosts[i - 1]
        proc = DaemonProc(label or f"manager-{i}", self.base, prefix=host.prefix)
        full = [*argv, "--data-dir", str(proc.data_dir)]
        if "--listen-addr" not in argv:
            full += [f"--listen-addr={host.api}"] if not self.literal_ports else []
        full += host.extra
        proc.spawn(full)
        self.procs.append(proc)
        self.commands.append(full)
        wait_ready(proc, host)
        return proc

    def rerun(self, i: int, proc: DaemonProc, extra: Sequence[str] = ()) -> None:
        """`systemctl start`: the same command again (resumes the manager from its data dir)."""
        argv = self.commands[self.procs.index(proc)]
        if extra:
            argv = [*argv, *extra]
            self.commands[self.procs.index(proc)] = argv
        proc.spawn(argv)
        wait_ready(proc, self.hosts[i - 1])

    def close(self) -> None:
        for proc in self.procs:
            with contextlib.suppress(OSError):
                proc.kill()


def wait_ready(proc: DaemonProc, host: Host, timeout: float = 45.0) -> None:
    def ready() -> bool:
        proc.check_alive("starting")
        if harness.STARTED_LINE not in proc.output():
            return False
        with harness.api(host.api, 2.0) as client:
            return client.get("/v1/ready").status_code == 200

    eventually(ready, timeout, f"{proc.label} to start and be ready", detail=proc.log_tail)


def info(host: Host) -> dict[str, Any]:
    result: dict[str, Any] = harness.get_json(host.api, "/v1/cluster")
    return result


def leader_name(host: Host) -> str | None:
    leader = info(host)["leader"]
    return leader["name"] if isinstance(leader, dict) else None


@pytest.fixture
def walk(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Walk]:
    with contextlib.ExitStack() as stack:
        if unavailable_reason() is None and not os.environ.get("WARREN_TEST_GUIDE_LOOPBACK"):
            lab = stack.enter_context(NetnsLab(3))
            hosts = [Host(i, lab.addr(i), 8080, lab.prefix(i)) for i in (1, 2, 3)]
            w = Walk(tmp_path, hosts, literal_ports=True)
        else:
            hosts = []
            for i in (1, 2, 3):
                addr = f"127.0.0.{next(harness._HOSTS)}"
                port = free_port("0.0.0.0") if i == 1 else free_port(addr)
                metrics = f"{addr}:{free_port(addr)}"
                extra = ["--raft-addr", f"{addr}:{free_port(addr)}", "--metrics-addr", metrics]
                hosts.append(Host(i, addr, port, [], extra, f"http://{metrics}/metrics"))
            w = Walk(tmp_path, hosts, literal_ports=False)
        try:
            yield w
        finally:
            failed = getattr(getattr(request.node, "rep_call", None), "failed", False)
            if failed:
                for proc in w.procs:
                    print(f"\n{proc.log_tail(60)}")
            w.close()


def lines_in_order(text: str, expected: list[str]) -> None:
    """Every expected line occurs in `text`, in this order (other lines may come between)."""
    got = text.splitlines()
    at = 0
    for want in expected:
        pattern = re.compile(want)
        for k in range(at, len(got)):
            if pattern.fullmatch(got[k]):
                at = k + 1
                break
        else:
            raise AssertionError(f"no line matching {want!r} (after line {at}) in:\n{text}")


def test_the_guide_walked_in_order(walk: Walk, tmp_path: Path) -> None:
    h1, h2, h3 = walk.hosts
    name = r"manager-\d+-[0-9a-f]+"

    # -- Step 1: initialize the first manager ------------------------------------------------------
    m1 = walk.daemon(1, walk.guide(STEP_1))
    advertised = f" \\(advertised as {re.escape(h1.api)}\\)"
    lines_in_order(m1.output(), [
        r"✓ Raft consensus initialized \(single-node\)",
        rf"✓ Manager started \(Node ID: {name}\)",
        rf"✓ API server listening on 0\.0\.0\.0:{h1.port}{advertised}",
        r"✓ Metrics available at http://.+/metrics",
        "", "Cluster initialized successfully!", "To add managers, generate join token:",
        "  warren cluster join-token manager",
    ])  # fmt: skip

    # -- Step 2: a manager join token ----------------------------------------------------------------
    step2 = cli(*walk.guide(STEP_2)).ok()
    lines_in_order(step2.stdout, [
        r"Join Token \(expires in 24h\):", r"SWMTKN-1-[0-9a-z-]+", "", "On other nodes, run:",
        r"warren manager join \\", r"  --token SWMTKN-1-[0-9a-z-]+ \\",
        rf"  --manager {re.escape(h1.api)} \\",
        r"  --advertise-addr <this-node-ip>:8080",
    ])  # fmt: skip
    token = step2.stdout.splitlines()[1]

    # -- Steps 3 and 4: join the second and third managers (the guide uses one token for both) ----------
    m2 = walk.daemon(2, [a.replace(GUIDE_TOKEN, token) for a in walk.guide(STEP_3)])
    m3 = walk.daemon(3, [a.replace(GUIDE_TOKEN, token) for a in walk.guide(STEP_4)])
    for proc, host, quorum in ((m2, h2, "2/2"), (m3, h3, "3/3")):
        lines_in_order(proc.output(), [
            rf"✓ Connected to cluster leader at {re.escape(h1.api)}",
            r"✓ Raft joined as follower",
            rf"✓ Manager started \(Node ID: {name}\)",
            rf"✓ API server listening on .*{re.escape(host.api)}\)?",
            "", "Manager joined successfully!",
            rf"Raft quorum: {quorum} managers \(needs 2 for majority\)",
        ])  # fmt: skip

    # -- Step 5: verify the cluster -------------------------------------------------------------------
    step5 = cli(*walk.guide(STEP_5)).ok()
    lines_in_order(step5.stdout, [
        r"Cluster ID: cluster-[0-9a-z]+",
        r"Raft Quorum: 3 managers \(needs 2 for majority\)",
        rf"Leader: {re.escape(m1.name)} \({re.escape(h1.api)}\)",
        "", "Managers:",
        rf"  {re.escape(m1.name)} +{re.escape(h1.api)} +Leader +ready",
        rf"  {re.escape(m2.name)} +{re.escape(h2.api)} +Follower +ready",
        rf"  {re.escape(m3.name)} +{re.escape(h3.api)} +Follower +ready",
        "",
        # The guide's managers are not --manager-only, so each runs a local worker (0 or 1 of them
        # joined, depending on whether a Docker Engine answers and how far it got).
        r"Workers: [0-3]",
    ])  # fmt: skip
    cluster_id = str(info(h1)["cluster_id"])

    # -- Failover: the leader crashes ---------------------------------------------------------------
    m1.kill()
    new_leader = eventually(lambda: leader_name(h2) if leader_name(h2) in (m2.name, m3.name) else None,
                          30, "a new leader among managers 2 and 3")
    assert leader_name(h3) in (new_leader, None)
    # The guide's "After: Manager-1 ✗ [DOWN]", quorum kept by the other two.
    def shown_down() -> str | None:
        out = cli("cluster", "info", "--manager", h2.api).ok().stdout
        return out if "unreachable" in out else None

    after = eventually(shown_down, 30, "manager 1 shown unreachable")
    lines_in_order(after, [
        r"Raft Quorum: 3 managers \(needs 2 for majority\)",
        rf"Leader: {re.escape(new_leader)} \(.+\)",
        rf"  {re.escape(m1.name)} +{re.escape(h1.api)} +Follower +unreachable",
    ])  # fmt: skip
    cli("cluster", "join-token", "worker", "-q", "--manager", h3.api).ok()  # writes succeed
    walk.rerun(1, m1)  # "Restart failed manager" / "Verify rejoins cluster"
    eventually(lambda: leader_name(h1) == new_leader or None, 30, "manager 1 to follow the new leader")

    # -- Failover: a follower crashes (no election, writes continue) -----------------------------------
    lead = {m2.name: (m2, h2), m3.name: (m3, h3)}[new_leader]
    follower, follower_host = (m1, h1)
    term = info(lead[1])["raft"]["term"]
    follower.kill()
    cli("cluster", "join-token", "worker", "-q", "--manager", lead[1].api).ok()
    assert leader_name(lead[1]) == new_leader
    assert info(lead[1])["raft"]["term"] == term  # no election was needed
    walk.rerun(1, follower)
    eventually(lambda: leader_name(follower_host) == new_leader or None, 30, "manager 1 back as a follower")

    # -- Monitor manager health: `curl http://manager:9090/metrics | grep raft_` -------------------------
    curl = "import sys, urllib.request; sys.stdout.write(urllib.request.urlopen(sys.argv[1]).read().decode())"
    fetch = [*h1.prefix, sys.executable, "-c", curl, h1.metrics_url]
    scraped = subprocess.run(fetch, capture_output=True, text=True, timeout=30, check=True).stdout
    metrics = parse_metrics(scraped)
    for guide_name, ours in GUIDE_METRICS.items():
        assert ours in metrics, f"the guide's {guide_name} is {ours} in Warren; not in {sorted(metrics)}"
    assert metrics["warren_raft_peers"] == 3

    # -- 7. WAN timers: every manager restarted (SIGTERM, as systemctl stop) with the guide's flags ------
    wan = walk.guide(WAN_TIMERS)[2:]
    assert wan == ["--raft-heartbeat-timeout", "1s", "--raft-election-timeout", "1s"]
    by_name = {m1.name: (1, m1, h1), m2.name: (2, m2, h2), m3.name: (3, m3, h3)}
    order = sorted(by_name, key=lambda n: n == new_leader)  # the leader last: one hand-over only
    for n in order:
        i, proc, host = by_name[n]
        assert proc.stop() == 0
        walk.rerun(i, proc, wan)
    assert walk.commands[0][:2] == ["cluster", "init"] and walk.commands[0][-4:] == wan  # the guide's command
    leader = eventually(lambda: leader_name(h1), 30, "a leader after the rolling restart")
    i, dead, _ = by_name[leader]
    survivors = [h for j, h in enumerate(walk.hosts, start=1) if j != i]
    # A follower now waits 1 s (heartbeat timeout) + up to 1 s (election timeout) without a leader, after
    # the 2 s leader lease: no new leader within 2 s of the crash (the defaults replace it in ~0.5 s).
    dead.kill()
    killed = time.monotonic()
    eventually(lambda: next((n for h in survivors if (n := leader_name(h)) not in (None, leader)), None),
             30, "a new leader with the WAN timers")
    assert time.monotonic() - killed >= 2.0, "the WAN timers did not take effect"
    walk.rerun(i, dead)

    # -- Backup: the unit's stop and start, then the guide's backup in Warren's terms ----------------------
    unit = configparser.ConfigParser(interpolation=None, strict=False)
    unit.read(UNIT)
    exec_start = shlex.split(unit["Service"]["ExecStart"])
    assert exec_start == ["/usr/local/bin/warren", "$WARREN_MANAGER_COMMAND", "$WARREN_MANAGER_FLAGS"]
    assert unit["Service"]["KillMode"] == "process" and "KillSignal" not in unit["Service"]
    assert 'WARREN_MANAGER_COMMAND=cluster init' in unit["Service"]["Environment"]
    # `sudo systemctl stop warren-manager` on manager 1: SIGTERM to `warren cluster init ...`.
    assert walk.commands[0][:2] == ["cluster", "init"]
    assert m1.stop() == 0
    archive = tmp_path / f"warren-backup-{time.strftime('%Y%m%d')}.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:  # `tar czf ... /var/lib/warren` (the whole data dir)
        tar.add(m1.data_dir, arcname="var/lib/warren")
    walk.rerun(1, m1)  # `sudo systemctl start warren-manager`
    with tarfile.open(archive) as tar:
        names = set(tar.getnames())
    for part in ("node.json", "tls/data.key", "raft", "warren.db"):
        assert f"var/lib/warren/{part}" in names, sorted(names)
    assert "var/lib/warren/data/warren.db" not in names  # the guide's path is <data-dir>/warren.db
    # Online, on any manager, nothing stopped (the backup a restore takes), through the admin socket
    # as docs/operations.md writes it (`--manager unix:/var/lib/warren/warren.sock`).
    backup = tmp_path / "warren-backup.db"
    cli("cluster", "backup", "--output", str(backup), "--manager", f"unix:{m2.data_dir / 'warren.sock'}").ok()
    key = tmp_path / "data.key"
    key.write_bytes((m1.data_dir / "tls" / "data.key").read_bytes())

    # -- Restore from backup: complete cluster loss ---------------------------------------------------
    for proc in (m1, m2, m3):
        proc.kill()
    restored = walk.daemon(1, ["cluster", "init", "--restore", str(backup), "--restore-key", str(key),
                               *walk.guide(STEP_1)[2:]], label="restored-manager-1")  # fmt: skip
    assert "State restored from" in restored.output()
    assert info(h1)["cluster_id"] == cluster_id
    # Under the unit: stop, then the unit's own command (no --restore) resumes the restored manager.
    assert restored.stop() == 0
    command = walk.commands[-1]
    restore_flags = ("--restore", "--restore-key")
    resume = [a for k, a in enumerate(command)
              if a not in restore_flags and command[k - 1] not in restore_flags]
    walk.commands[-1] = resume
    walk.rerun(1, restored)
    assert "✓ Raft consensus resumed (1 manager)" in restored.output()
    assert info(h1)["cluster_id"] == cluster_id
