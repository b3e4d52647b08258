"""Ingress across worker hosts (process runtime, workers in network namespaces): a port published in
ingress mode answers on every worker, also one running no replica, and spreads connections over the
healthy replicas; a replica that turns unhealthy gets no new connection within one health interval;
no connection goes to a replica on a worker that has been cut off.

The client is a process task on the `edge` host, which runs no replica: it opens a new connection to
its own worker's ingress port (127.0.0.1:INGRESS) for every request and logs who answered and how long
it took. The api replicas listen on TARGET on their own hosts (a process task binds its port itself).
"""

from __future__ import annotations

import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.integration.managers import get_json
from tests.integration.netns import NetnsLab
from tests.integration.programs import task_id_server
from tests.integration.workers import Fleet, netns_fleet
from warren.testing.wait import eventually

PORTS = (8080, 7946, 9090)
INGRESS = 8090  # published
TARGET = 8091  # where each api replica listens, on its own host
HEALTH_INTERVAL_S = 1.0


# A new connection to the local ingress port per request; appends "<start> <seconds> ok <task>" or
# "<start> <seconds> fail <why>" to the file named by argv[1].
CLIENT = textwrap.dedent(
    """
    import itertools, sys, time, urllib.request

    with open(sys.argv[1], "a", buffering=1) as out:
        for i in itertools.count():
            start = time.time()
            try:
                with urllib.request.urlopen("http://127.0.0.1:INGRESS/", timeout=3.0) as answer:
                    out.write(f"{start:.3f} {time.time() - start:.3f} ok {answer.read().decode()}\\n")
            except Exception as exc:
                out.write(f"{start:.3f} {time.time() - start:.3f} fail {type(exc).__name__}\\n")
            time.sleep(0.02)
    """
)

Row = tuple[float, float, bool, str]  # (start, seconds, ok, api task or error)


@pytest.fixture
def lab_fleet(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[NetnsLab, Fleet]]:
    with netns_fleet(5, PORTS, tmp_path, request) as made:
        yield made


def results(path: Path, since: float = 0.0) -> list[Row]:
    """The client's requests started at or after `since`."""
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        parts = line.split(" ", 3)
        if len(parts) == 4 and float(parts[0]) >= since:
            rows.append((float(parts[0]), float(parts[1]), parts[2] == "ok", parts[3]))
    return rows


def answered_by(path: Path, since: float) -> set[str]:
    return {task for _, _, ok, task in results(path, since) if ok}


def start(lab: NetnsLab, fleet: Fleet, tmp_path: Path, replicas: int) -> tuple[dict[str, int], Path, Path]:
    """A manager (host 1), the edge worker (host 2, runs the client only), api workers on hosts 3-5; the
    api service with `replicas` replicas, one per host, published in ingress mode; the client. Returns
    (api host by worker name, the client's log, the directory of sick flags)."""
    fleet.start_managers(1)
    fleet.add_worker("process", prefix=lab.prefix(2), labels=["role=edge"])
    hosts = {fleet.add_worker("process", prefix=lab.prefix(i), labels=["role=api"]).name: i
             for i in (3, 4, 5)}
    sick, log = tmp_path / "sick", tmp_path / "client.log"
    sick.mkdir()
    api_py, client_py = tmp_path / "api.py", tmp_path / "client.py"
    # A stopped replica keeps answering until it is killed (stop_timeout_s): a connection it answers
    # after it turned unhealthy is one the ingress sent it, not a race with its exit.
    api_py.write_text(task_id_server(TARGET, sick_dir=sick, ignore_sigterm=True))
    client_py.write_text(CLIENT.replace("INGRESS", str(INGRESS)))
    fleet.create(
        "api", replicas=replicas, image="local", driver="process", command=[sys.executable, str(api_py)],
        constraints=["node.labels.role==api"], stop_timeout_s=10.0,
        publish=[{"host": INGRESS, "container": TARGET, "mode": "ingress"}],
        health={"kind": "http", "port": TARGET, "path": "/health", "interval_s": HEALTH_INTERVAL_S,
                "timeout_s": 0.5, "retries": 1},
    )
    fleet.create("client", replicas=1, image="local", driver="process",
                 command=[sys.executable, str(client_py), str(log)], constraints=["node.labels.role==edge"])
    running = {t["id"] for t in fleet.wait_running("api", replicas)}
    fleet.wait_running("client", 1)
    # From the edge host, which runs no replica: every replica answers.
    eventually(lambda: answered_by(log, 0.0) >= running, 30, "every api replica to answer through the edge",
               detail=lambda: log.read_text()[-2000:] if log.exists() else fleet.log_tails())
    return hosts, log, sick


def test_the_ingress_port_answers_on_every_worker_and_spreads_over_the_replicas(
    lab_fleet: tuple[NetnsLab, Fleet], tmp_path: Path
) -> None:
    lab, fleet = lab_fleet
    _, log, _ = start(lab, fleet, tmp_path, replicas=2)
    running = {t["id"] for t in fleet.running("api")}
    # From outside, on every worker host's address (the test process reaches every namespace). The edge's
    # round-robin is shared with the client task, whose requests can take every other turn: there only
    # that a replica answers; the api hosts' ingress serves this test alone: both replicas, in turn.
    for i in (2, 3, 4, 5):
        answers = set()
        for _ in range(6):
            response = httpx.get(f"http://{lab.addr(i)}:{INGRESS}/", timeout=5.0)
            assert response.status_code == 200, (i, response.text)
            answers.add(response.text)
        if i == 2:
            assert answers <= running and answers, f"host {i}: answered by {answers}, running {running}"
        else:
            assert answers == running, f"host {i}: answered by {answers}, running {running}"
    # The manager's host runs no worker: nothing listens there.
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://{lab.addr(1)}:{INGRESS}/", timeout=2.0)


def test_an_unhealthy_replica_gets_no_new_connection_within_one_health_interval(
    lab_fleet: tuple[NetnsLab, Fleet], tmp_path: Path
) -> None:
    lab, fleet = lab_fleet
    _, log, sick = start(lab, fleet, tmp_path, replicas=2)
    first, second = sorted(fleet.running("api"), key=lambda t: str(t["id"]))
    flagged = time.time()
    (sick / first["id"]).write_text("")
    # The probe that fails comes within one interval (plus its timeout); then one more interval at most
    # until the ingress everywhere stops sending the replica new connections.
    eventually(lambda: len(answered_by(log, flagged + 2 * HEALTH_INTERVAL_S + 1.5)) > 0, 30,
               "requests after the replica turned unhealthy", detail=lambda: log.read_text()[-2000:])
    last = max((s for s, _, ok, task in results(log, flagged) if ok and task == first["id"]), default=flagged)
    print(f"\nthe unhealthy replica's last new connection came {last - flagged:.2f} s after its health "
          f"check started failing (interval {HEALTH_INTERVAL_S} s)")
    assert last - flagged <= 2 * HEALTH_INTERVAL_S + 0.5, (
        f"the replica got new connections {last - flagged:.2f} s after its health check started failing")
    failed = [row for row in results(log, flagged) if not row[2]]
    assert not failed, f"requests failed while a replica turned unhealthy: {failed}"


def test_no_connection_goes_to_a_replica_on_a_cut_off_worker(
    lab_fleet: tuple[NetnsLab, Fleet], tmp_path: Path
) -> None:
    lab, fleet = lab_fleet
    hosts, log, _ = start(lab, fleet, tmp_path, replicas=2)
    lost, kept = sorted(fleet.running("api"), key=lambda t: str(t["id"]))
    cut = time.time()
    lab.isolate(hosts[lost["node"]])
    eventually(lambda: get_json(fleet.addr, f"/v1/nodes/{lost['node']}")["state"] == "down", 30,
               "the leader to write the cut-off worker down", detail=fleet.log_tails)
    down = time.time()
    eventually(lambda: len(results(log, down + 1.0)) >= 40, 30, "requests after the worker was written down")
    after = results(log, down + 1.0)
    assert all(ok for _, _, ok, _ in after), f"requests failed after the worker was written down: {after}"
    assert lost["id"] not in {task for *_, task in after}
    slow = [row for row in after if row[1] > 0.5]  # a connection tried on the lost host waits 1 s for it
    assert not slow, f"requests still waited on the cut-off worker after it was written down: {slow}"
    during = results(log, cut)
    failed = [row for row in during if not row[2]]
    print(f"\nwhile the worker was cut off but not yet down ({down - cut:.1f} s): {len(during)} requests, "
          f"{len(failed)} failed, {sum(1 for _, s, _, _ in during if s > 0.5)} waited on the lost replica, "
          f"slowest {max(s for _, s, _, _ in during):.2f} s")
    assert not failed, f"requests failed while a replica's worker was cut off: {failed}"
    # The edge's ingress waits on the lost replica once (its connect timeout), then tries it last.
    waited = [row for row in during if row[1] > 0.5]
    assert len(waited) <= 2, f"requests waited on the cut-off replica again and again: {waited}"
    lab.heal(hosts[lost["node"]])


def test_requests_keep_succeeding_when_a_replicas_worker_is_killed(
    lab_fleet: tuple[NetnsLab, Fleet], tmp_path: Path
) -> None:
    lab, fleet = lab_fleet
    _, log, _ = start(lab, fleet, tmp_path, replicas=2)
    lost, kept = sorted(fleet.running("api"), key=lambda t: str(t["id"]))
    victim = next(w for w in fleet.workers if w.name == lost["node"])
    killed = time.time()
    victim.kill()
    victim.kill_tasks()  # its host stays up: a connection to the dead replica is refused at once
    replacement = eventually(
        lambda: next((t for t in fleet.running("api") if t["id"] not in (lost["id"], kept["id"])), None),
        60, "a replacement replica", detail=fleet.log_tails)
    eventually(lambda: replacement["id"] in answered_by(log, killed), 30, "the replacement to answer",
               detail=lambda: log.read_text()[-3000:])
    during = results(log, killed)
    failed = [row for row in during if not row[2]]
    oks = [start for start, _, ok, _ in during if ok]
    gap = max((b - a for a, b in zip([killed, *oks], oks, strict=False)), default=0.0)
    print(f"\nafter a replica's worker was killed: {len(during)} requests, {len(failed)} failed, "
          f"longest gap {gap:.2f} s")
    # Only a request under way on the killed replica (connected, then reset as it died) may fail; no
    # new one may.
    assert len(failed) <= 1 and all(start < killed + 1.0 for start, *_ in failed), (
        f"requests failed after a replica's worker was killed: {failed[:20]}")
