"""Service discovery by name across worker hosts (process runtime, workers in network namespaces):
a `web` task reaches `api` by name (through its worker's DNS server, WARREN_DNS, and through the hosts
file, WARREN_HOSTS); when an api replica's host is cut off, requests succeed again once the replacement
runs (the longest gap is printed); scaled 1 -> 3, every api replica answers."""

from __future__ import annotations

import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.netns import NetnsLab
from tests.integration.programs import task_id_server
from tests.integration.workers import Fleet, netns_fleet
from warren.testing.wait import eventually

PORTS = (8080, 7946, 9090)
API_PORT = 8081


# Resolves `api` afresh for every request, through the DNS server and the hosts file in turn, and
# appends "<time> ok <how> <api task>" or "<time> fail <how> <why>" to the file named by argv[1].
WEB = textwrap.dedent(
    """
    import itertools, os, sys, time, urllib.request
    import dns.resolver

    host, port = os.environ["WARREN_DNS"].rsplit(":", 1)
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = [host]
    resolver.port = int(port)
    resolver.lifetime = 1.0

    def by_dns():
        return resolver.resolve("api", "A")[0].to_text()

    turn = itertools.count()

    def by_hosts():
        with open(os.environ["WARREN_HOSTS"]) as f:
            addrs = [line.split()[0] for line in f if line.split()[1:2] == ["api"]]
        return addrs[next(turn) % len(addrs)]

    with open(sys.argv[1], "a", buffering=1) as out:
        for i in itertools.count():
            how, resolve = ("dns", by_dns) if i % 2 == 0 else ("hosts", by_hosts)
            try:
                addr = resolve()
                with urllib.request.urlopen(f"http://{addr}:PORT/", timeout=1.0) as answer:
                    out.write(f"{time.time():.3f} ok {how} {answer.read().decode()}\\n")
            except Exception as exc:
                out.write(f"{time.time():.3f} fail {how} {type(exc).__name__}\\n")
            time.sleep(0.05)
    """
)


@pytest.fixture
def lab_fleet(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[NetnsLab, Fleet]]:
    with netns_fleet(6, PORTS, tmp_path, request) as made:
        yield made


def results(path: Path, since: float = 0.0) -> list[tuple[float, bool, str, str]]:
    """(time, ok, how, api task or error) of the web task's requests at or after `since`."""
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        parts = line.split(" ", 3)
        if len(parts) == 4 and float(parts[0]) >= since:
            rows.append((float(parts[0]), parts[1] == "ok", parts[2], parts[3]))
    return rows


def longest_gap(rows: list[tuple[float, bool, str, str]]) -> float:
    """The longest time between two successful requests."""
    oks = [t for t, ok, _, _ in rows if ok]
    return max((b - a for a, b in zip(oks, oks[1:], strict=False)), default=0.0)


def test_web_reaches_api_by_name_through_a_node_loss_and_a_scale_up(
    lab_fleet: tuple[NetnsLab, Fleet], tmp_path: Path
) -> None:
    lab, fleet = lab_fleet
    fleet.start_managers(1)  # host 1
    fleet.add_worker("process", prefix=lab.prefix(2), labels=["role=web"])
    api_hosts = {fleet.add_worker("process", prefix=lab.prefix(i), labels=["role=api"]).name: i
                 for i in range(3, 7)}
    api_py, web_py, log = tmp_path / "api.py", tmp_path / "web.py", tmp_path / "web.log"
    api_py.write_text(task_id_server(API_PORT))
    web_py.write_text(WEB.replace("PORT", str(API_PORT)))
    fleet.create("api", replicas=1, image="local", driver="process", command=[sys.executable, str(api_py)],
                 constraints=["node.labels.role==api"],
                 publish=[{"host": API_PORT, "container": API_PORT, "mode": "host"}])  # one replica per host
    fleet.create("web", replicas=1, image="local", driver="process",
                 command=[sys.executable, str(web_py), str(log)], constraints=["node.labels.role==web"])
    [first] = fleet.wait_running("api", 1)
    fleet.wait_running("web", 1)

    # By name, both ways.
    eventually(lambda: {how for _, ok, how, task in results(log) if ok and task == first["id"]}
               == {"dns", "hosts"}, 30, "web to reach api by name (DNS and hosts file)",
               detail=lambda: log.read_text()[-2000:] if log.exists() else fleet.log_tails())

    # The api replica's host is lost: requests succeed again once the replacement runs.
    cut_at = time.time()
    lab.isolate(api_hosts[first["node"]])
    second = eventually(lambda: next((t for t in fleet.running("api") if t["node"] != first["node"]), None),
                        60, "a replacement api replica on another host", detail=fleet.log_tails)
    eventually(lambda: any(ok and task == second["id"] for _, ok, _, task in results(log, cut_at)), 30,
               "web to reach the replacement", detail=lambda: log.read_text()[-2000:])
    settled = time.time()
    eventually(lambda: len(results(log, settled)) >= 20, 30, "more requests")
    after = results(log, settled)
    assert all(ok for _, ok, _, _ in after), f"requests failed after the replacement: {after}"
    gap = longest_gap(results(log, cut_at - 1.0))
    print(f"\nlongest gap in service after an api replica's host was cut off: {gap:.2f} s")
    # The node-down grace (5 s), the replacement's start and one session round-trip: well under 15 s.
    assert gap < 15.0, f"requests failed for {gap:.1f} s after the host was cut off"
    lab.heal(api_hosts[first["node"]])

    # Scale up: every replica answers.
    fleet.update("api", replicas=3)
    running = {t["id"] for t in fleet.wait_running("api", 3, timeout=60)}
    scaled = time.time()
    eventually(lambda: {task for _, ok, _, task in results(log, scaled) if ok} >= running, 30,
               "all three api replicas to answer web", detail=lambda: log.read_text()[-2000:])
    seen = {task for _, ok, _, task in results(log, scaled) if ok}
    assert seen == running, f"answers came from tasks that should not run: {seen - running}"
