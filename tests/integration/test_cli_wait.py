"""The CLI shows what happens (issue 20), on a real manager and a process-runtime worker: `service
create` waits until its tasks run and exits 0; `service update` to a failing health check exits 1 with
the reason; an operator's node label places a constrained service; `node ps` lists the node's tasks;
`service update --mode global` converges."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.integration.workers import Fleet, fleets

pytestmark = pytest.mark.integration

SLEEPER = ["--driver", "process", "--image", "none", "--command", "sleep 100000"]


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[Fleet]:
    with fleets(tmp_path_factory.mktemp("cliwait"), request) as make:
        f = make()
        f.start_managers(1)
        f.add_worker("process")
        yield f


def test_create_waits_for_healthy_tasks_and_a_failing_update_exits_1(fleet: Fleet) -> None:
    created = fleet.cli("service", "create", "web", *SLEEPER, "--replicas", "2", "--health-cmd", "true",
                        "--health-interval", "300ms", "--update-monitor", "500ms").ok()
    assert created.stdout.startswith("Service web created (2 replicas, id ")
    assert created.stderr.splitlines()[-1] == "web: converged: 2/2 running", created.stderr
    running = [t for t in fleet.running("web") if t["health"] == "healthy"]
    assert len(running) == 2, fleet.tasks("web")  # converged means it: both run, both healthy

    failed = fleet.cli("service", "update", "web", "--health-cmd", "false", "--health-retries", "1")
    assert failed.returncode == 1, failed
    last = failed.stderr.splitlines()[-1]
    assert last.startswith("warren: service web did not converge: update paused: task "), failed.stderr
    assert failed.stdout.startswith("Service web updated (version ")  # the change itself was made
    fleet.cli("service", "rm", "web").ok()


def test_operator_label_places_a_service_then_node_ps_and_a_mode_switch(fleet: Fleet) -> None:
    nodes = json.loads(fleet.cli("node", "ls", "-o", "json").ok().stdout)
    (worker,) = [n["name"] for n in nodes if n["role"] == "worker"]
    labelled = fleet.cli("node", "update", "--label-add", "zone=eu", worker, "-o", "json").ok()
    node = json.loads(labelled.stdout)
    assert node["operator_labels"] == {"zone": "eu"} and node["labels"]["zone"] == "eu"

    placed = fleet.cli("service", "create", "edge", *SLEEPER, "--constraint", "node.labels.zone==eu")
    assert placed.returncode == 0, placed
    (task,) = fleet.running("edge")
    assert task["node"] == worker
    ps = fleet.cli("node", "ps", worker).ok()
    assert "edge.1" in ps.stdout and "running" in ps.stdout, ps.stdout

    switched = fleet.cli("service", "update", "edge", "--mode", "global")
    assert switched.returncode == 0, switched
    assert "every task is replaced by one of global mode" in switched.stdout
    tasks = fleet.running("edge")
    assert tasks and all(t["slot"] is None for t in tasks), fleet.tasks("edge")

    fleet.cli("node", "update", "--label-rm", "zone", worker).ok()
    fleet.cli("service", "rm", "edge").ok()
