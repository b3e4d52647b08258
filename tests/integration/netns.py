"""Network namespaces for partition tests: N hosts on one bridge, cut apart with iptables, healed again.

Each host is a namespace with a veth into a bridge in the root namespace and an address 10.X.Y.i/24
on a subnet no route uses yet; the root namespace holds 10.X.Y.254 on the bridge, so the test process
reaches every host. A partition is a set of DROP rules *inside* the isolated host's namespace (INPUT
from and OUTPUT to the other hosts' addresses): the test process keeps talking to everyone.

Docker sets the root FORWARD policy to DROP and bridged frames go through it (br_netfilter), so the lab
inserts one ACCEPT rule for its bridge and removes it at close. Everything is named after the owning
pytest process (`wtn-<pid>-<k>-<i>`, `wtb-<pid>-<k>`, `wtv-<pid>-<k><i>`, rule comment
`warren-tests:<pid>:<bridge>`), so `sweep()` removes what crashed runs left behind without touching
a concurrent run's lab. Needs root and `ip netns`.
"""

from __future__ import annotations

import contextlib
import ipaddress
import itertools
import os
import random
import re
import shutil
import subprocess
from collections.abc import Iterator, Sequence

NETNS_PREFIX = "wtn-"
BRIDGE_PREFIX = "wtb-"
VETH_PREFIX = "wtv-"
COMMENT_PREFIX = "warren-tests:"
_labs = itertools.count()


class NetnsError(RuntimeError):
    pass


def run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(list(argv), capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    if check and done.returncode != 0:
        raise NetnsError(f"`{' '.join(argv)}` exited {done.returncode}: {done.stderr.strip()}")
    return done


def unavailable_reason() -> str | None:
    """Why namespaces cannot be used here (None: they can)."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    for tool in ("ip", "iptables"):
        if shutil.which(tool) is None:
            return f"`{tool}` is not installed"
    probe = f"{NETNS_PREFIX}probe-{os.getpid()}"
    try:
        done = run("ip", "netns", "add", probe, check=False)
        if done.returncode != 0:
            return f"`ip netns add` failed: {done.stderr.strip()}"
        done = run("ip", "netns", "exec", probe, "iptables", "-S", check=False)
        if done.returncode != 0:
            return f"iptables inside a namespace failed: {done.stderr.strip()}"
    finally:
        run("ip", "netns", "del", probe, check=False)
    return None


def _pid_alive(pid: int) -> bool:
    return os.path.exists(f"/proc/{pid}")


def _owner(name: str, prefix: str) -> int | None:
    match = re.match(re.escape(prefix) + r"(\d+)-", name)
    return int(match.group(1)) if match else None


def sweep() -> list[str]:
    """Remove namespaces, links and FORWARD rules left by test processes that no longer run."""
    removed: list[str] = []
    for line in run("ip", "netns", "list", check=False).stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        pid = _owner(name, NETNS_PREFIX)
        if pid is not None and not _pid_alive(pid):
            run("ip", "netns", "del", name, check=False)
            removed.append(name)
    for line in run("ip", "-o", "link", "show", check=False).stdout.splitlines():
        parts = line.split(":")
        if len(parts) < 2:
            continue
        name = parts[1].strip().split("@")[0]
        for prefix in (VETH_PREFIX, BRIDGE_PREFIX):
            pid = _owner(name, prefix)
            if pid is not None and not _pid_alive(pid):
                run("ip", "link", "del", name, check=False)
                removed.append(name)
    for rule in run("iptables", "-S", "FORWARD", check=False).stdout.splitlines():
        match = re.search(re.escape(COMMENT_PREFIX) + r"(\d+):", rule)
        if match and not _pid_alive(int(match.group(1))) and rule.startswith("-A "):
            run("iptables", "-D", *rule[3:].replace('"', "").split(), check=False)
            removed.append(rule)
    return removed


def _free_subnet() -> ipaddress.IPv4Network:
    """A 10.X.Y.0/24 that overlaps no route and no address of the root namespace."""
    used = []
    for line in run("ip", "-4", "route", "show", "table", "all", check=False).stdout.splitlines():
        first = line.split()[0] if line.split() else ""
        if first in ("local", "broadcast", "unicast"):
            first = line.split()[1]
        with contextlib.suppress(ValueError):
            used.append(ipaddress.ip_network(first, strict=False))
    for line in run("ip", "-4", "-o", "addr", "show", check=False).stdout.splitlines():
        fields = line.split()
        if "inet" in fields:
            with contextlib.suppress(ValueError):
                used.append(ipaddress.ip_network(fields[fields.index("inet") + 1], strict=False))
    used = [n for n in used if n.prefixlen > 0]  # the default route overlaps everything
    rng = random.Random()
    for _ in range(200):
        net = ipaddress.IPv4Network(f"10.{rng.randint(100, 250)}.{rng.randint(0, 255)}.0/24")
        if not any(net.overlaps(u) for u in used):
            return net
    raise NetnsError("no free 10.x.y.0/24 subnet found")


class NetnsLab:
    """`n` hosts (1..n), each a namespace on a shared bridge. Use as a context manager."""

    def __init__(self, n: int) -> None:
        if not 1 <= n <= 9:
            raise ValueError("1 to 9 hosts")
        self.n = n
        pid, k = os.getpid(), next(_labs)
        self.tag = f"{pid}-{k}"
        self.bridge = f"{BRIDGE_PREFIX}{self.tag}"
        self.comment = f"{COMMENT_PREFIX}{pid}:{self.bridge}"
        self.subnet = _free_subnet()
        self.namespaces = [f"{NETNS_PREFIX}{self.tag}-{i}" for i in range(1, n + 1)]
        self.veths = [f"{VETH_PREFIX}{self.tag}{i}" for i in range(1, n + 1)]
        self._forward_rule = ["FORWARD", "-i", self.bridge, "-o", self.bridge,
                              "-m", "comment", "--comment", self.comment, "-j", "ACCEPT"]  # fmt: skip
        self._cut: dict[int, list[list[str]]] = {}  # host -> iptables rules (without -A/-D) in its namespace
        for name in (self.bridge, *self.veths):
            assert len(name) <= 15, f"interface name too long: {name}"

    def __enter__(self) -> NetnsLab:
        try:
            self.setup()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def addr(self, i: int) -> str:
        """The address of host i (1-based)."""
        return str(self.subnet.network_address + i)

    @property
    def gateway(self) -> str:
        """The root namespace's address on the bridge (where the test process talks from)."""
        return str(self.subnet.network_address + 254)

    def prefix(self, i: int) -> list[str]:
        """Command prefix that runs a program inside host i's namespace."""
        return ["ip", "netns", "exec", self.namespaces[i - 1]]

    def setup(self) -> None:
        sweep()
        run("ip", "link", "add", self.bridge, "type", "bridge")
        run("ip", "addr", "add", f"{self.gateway}/24", "dev", self.bridge)
        run("ip", "link", "set", self.bridge, "up")
        run("iptables", "-I", *self._forward_rule[:1], "1", *self._forward_rule[1:])
        for i, (ns, veth) in enumerate(zip(self.namespaces, self.veths, strict=True), start=1):
            peer = "wtp" + veth[len(VETH_PREFIX) - 1 :]  # renamed eth0 inside; deleted with its twin
            run("ip", "netns", "add", ns)
            run("ip", "link", "add", veth, "type", "veth", "peer", "name", peer)
            run("ip", "link", "set", peer, "netns", ns)
            run("ip", "link", "set", veth, "master", self.bridge, "up")
            inside = self.prefix(i)
            run(*inside, "ip", "link", "set", "lo", "up")
            run(*inside, "ip", "link", "set", peer, "name", "eth0")
            run(*inside, "ip", "addr", "add", f"{self.addr(i)}/24", "dev", "eth0")
            run(*inside, "ip", "link", "set", "eth0", "up")

    # -- partitions ---------------------------------------------------------------------------------

    def isolate(self, i: int, from_hosts: Sequence[int] | None = None) -> None:
        """Drop all traffic between host i and the given hosts (default: every other host)."""
        others = [j for j in (from_hosts or range(1, self.n + 1)) if j != i]
        rules = []
        for j in others:
            rules.append(["INPUT", "-s", self.addr(j), "-j", "DROP"])
            rules.append(["OUTPUT", "-d", self.addr(j), "-j", "DROP"])
        for rule in rules:
            run(*self.prefix(i), "iptables", "-I", *rule)
        self._cut.setdefault(i, []).extend(rules)

    def drop_inbound(self, i: int, probability: float = 1.0, from_hosts: Sequence[int] | None = None) -> None:
        """One-way loss: host i drops this share of what the given hosts (default: every other) send
        it, and still sends to them (iptables' `statistic` match below 1.0)."""
        if not 0.0 < probability <= 1.0:
            raise ValueError(f"a drop probability is in (0, 1], got {probability}")
        match = [] if probability >= 1.0 else ["-m", "statistic", "--mode", "random",
                                               "--probability", f"{probability:.3f}"]  # fmt: skip
        rules = [["INPUT", "-s", self.addr(j), *match, "-j", "DROP"]
                 for j in (from_hosts or range(1, self.n + 1)) if j != i]  # fmt: skip
        for rule in rules:
            run(*self.prefix(i), "iptables", "-I", *rule)
        self._cut.setdefault(i, []).extend(rules)

    def heal(self, i: int | None = None) -> None:
        """Remove the partition rules of host i (default: of every host)."""
        for host in [i] if i is not None else list(self._cut):
            for rule in self._cut.pop(host, []):
                run(*self.prefix(host), "iptables", "-D", *rule, check=False)

    def hosts(self, ports: tuple[int, int, int]) -> Iterator[tuple[str, tuple[int, int, int], list[str]]]:
        """(address, ports, command prefix) of hosts 1..n, for ManagerCluster(hosts=...)."""
        for i in range(1, self.n + 1):
            yield self.addr(i), ports, self.prefix(i)

    # -- teardown -----------------------------------------------------------------------------------

    def close(self) -> None:
        """Remove rules, namespaces, veths and the bridge; tolerant of a half-built lab."""
        self._cut.clear()
        for ns in self.namespaces:
            run("ip", "netns", "del", ns, check=False)
        for veth in self.veths:
            run("ip", "link", "del", veth, check=False)
        run("ip", "link", "del", self.bridge, check=False)
        while run("iptables", "-D", *self._forward_rule, check=False).returncode == 0:
            pass

    def leftovers(self) -> list[str]:
        """Anything of this lab still present (empty after close)."""
        found = []
        netns = run("ip", "netns", "list", check=False).stdout
        links = run("ip", "-o", "link", "show", check=False).stdout
        rules = run("iptables", "-S", "FORWARD", check=False).stdout
        found += [ns for ns in self.namespaces if re.search(rf"^{re.escape(ns)}(\s|$)", netns, re.M)]
        found += [name for name in (self.bridge, *self.veths) if f" {name}:" in links or f" {name}@" in links]
        if self.comment in rules:
            found.append(f"FORWARD rule {self.comment}")
        return found
