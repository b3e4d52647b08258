"""`warren node list | inspect | drain | activate | rm` through `main`, with the manager replaced by
httpx.MockTransport."""

from __future__ import annotations

import json

import httpx
import pytest
import yaml

from tests.unit.cli.fake_api import FakeManager, run

NODES = [
    {"name": "manager-1", "role": "manager", "state": "ready", "availability": "active", "raft_id": 1,
     "api_addr": "192.168.1.10:8080", "raft_addr": "192.168.1.10:7946", "created_at": 1790000000.0,
     "updated_at": 1790000000.0, "version": 3},
    {"name": "manager-22", "role": "manager", "state": "down", "availability": "active", "raft_id": 2,
     "api_addr": "192.168.1.11:8080", "raft_addr": "192.168.1.11:7946", "created_at": 1790000000.0,
     "updated_at": 1790000000.0, "version": 9},
]


# -- nodes ------------------------------------------------------------------------------------------

def test_node_list_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(FakeManager({("GET", "/v1/nodes"): NODES}), "node", "list") == 0
    assert capsys.readouterr().out == (
        "NAME        ROLE     STATE  AVAILABILITY  ADDRESS\n"
        "manager-1   manager  ready  active        192.168.1.10:8080\n"
        "manager-22  manager  down   active        192.168.1.11:8080\n"
    )


def test_node_list_empty_table_has_headers(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(FakeManager({("GET", "/v1/nodes"): []}), "node", "list") == 0
    assert capsys.readouterr().out == "NAME  ROLE  STATE  AVAILABILITY  ADDRESS\n"


@pytest.mark.parametrize("fmt", ["json", "yaml"])
def test_node_list_machine_formats(fmt: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(FakeManager({("GET", "/v1/nodes"): NODES}), "node", "list", "-o", fmt) == 0
    out = capsys.readouterr().out
    assert (json.loads(out) if fmt == "json" else yaml.safe_load(out)) == NODES


def test_node_inspect_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(FakeManager({("GET", "/v1/nodes/manager-1"): NODES[0]}), "node", "inspect", "manager-1") == 0
    out = capsys.readouterr().out
    assert out.startswith("FIELD         VALUE\nname          manager-1\n")
    assert "created_at    2026-09-21T" in out


def test_node_inspect_missing(capsys: pytest.CaptureFixture[str]) -> None:
    fake = FakeManager({("GET", "/v1/nodes/ghost"): lambda r: httpx.Response(
        404, json={"error": "not_found", "message": "no node 'ghost'"})})
    assert run(fake, "node", "inspect", "ghost") == 1
    assert capsys.readouterr().err == "warren: no node 'ghost'\n"


WORKERS = [
    {"name": "worker-1", "role": "worker", "state": "ready", "availability": "active", "raft_id": None,
     "api_addr": "192.168.1.99", "raft_addr": None, "addr": "192.168.1.20", "labels": {"zone": "eu"},
     "resources": {"cpus": 4, "memory": 8 * 2**30, "drivers": ["docker", "process"], "hostname": "w1"},
     "created_at": 1790000000.0, "updated_at": 1790000000.0, "version": 21},
    {"name": "worker-2", "role": "worker", "state": "down", "availability": "drain", "raft_id": None,
     "api_addr": None, "raft_addr": None, "addr": "192.168.1.21", "labels": {},
     "resources": {"cpus": 0.5, "memory": 1536 * 2**20, "drivers": ["process"], "hostname": "w2"},
     "created_at": 1790000000.0, "updated_at": 1790000000.0, "version": 25},
]


def test_node_list_shows_workers_with_their_resources(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(FakeManager({("GET", "/v1/nodes"): NODES[:1] + WORKERS}), "node", "list") == 0
    assert capsys.readouterr().out == (
        "NAME       ROLE     STATE  AVAILABILITY  ADDRESS            CPUS  MEMORY\n"
        "manager-1  manager  ready  active        192.168.1.10:8080  -     -\n"
        "worker-1   worker   ready  active        192.168.1.20       4     8GiB\n"
        "worker-2   worker   down   drain         192.168.1.21       0.5   1.5GiB\n"
    )


def test_node_inspect_shows_everything_with_readable_memory(capsys: pytest.CaptureFixture[str]) -> None:
    fake = FakeManager({("GET", "/v1/nodes/worker-1"): WORKERS[0]})
    assert run(fake, "node", "inspect", "worker-1") == 0
    out = capsys.readouterr().out
    for line in ("labels.zone         eu\n", "resources.cpus      4\n",
                 "resources.memory    8589934592 (8GiB)\n",
                 'resources.drivers   ["docker","process"]\n', "resources.hostname  w1\n",
                 "addr                192.168.1.20\n", "availability        active\n"):
        assert line in out
    assert run(fake, "node", "inspect", "worker-1", "-o", "json") == 0
    assert json.loads(capsys.readouterr().out) == WORKERS[0]  # bytes stay bytes for tools


def test_node_drain_and_activate(capsys: pytest.CaptureFixture[str]) -> None:
    def availability(request: httpx.Request) -> httpx.Response:
        wanted = json.loads(request.content)["availability"]
        return httpx.Response(200, json={**WORKERS[0], "availability": wanted})

    fake = FakeManager({("POST", "/v1/nodes/worker-1/availability"): availability})
    assert run(fake, "node", "drain", "worker-1") == 0
    assert fake.body() == {"availability": "drain"}
    assert capsys.readouterr().out == "Node worker-1 drained: its tasks move to other nodes\n"
    assert run(fake, "node", "activate", "worker-1") == 0
    assert fake.body() == {"availability": "active"}
    assert capsys.readouterr().out == "Node worker-1 active\n"
    assert run(fake, "node", "drain", "worker-1", "-o", "json") == 0
    assert json.loads(capsys.readouterr().out)["availability"] == "drain"


def test_node_drain_of_an_unknown_node(capsys: pytest.CaptureFixture[str]) -> None:
    fake = FakeManager({("POST", "/v1/nodes/ghost/availability"): lambda r: httpx.Response(
        404, json={"error": "not_found", "message": "no node named 'ghost'"})})
    assert run(fake, "node", "drain", "ghost") == 1
    assert capsys.readouterr().err == "warren: no node named 'ghost'\n"


def test_node_rm(capsys: pytest.CaptureFixture[str]) -> None:
    fake = FakeManager({("DELETE", "/v1/nodes/manager-22"): {"removed": "manager-22"}})
    assert run(fake, "node", "rm", "manager-22") == 0
    assert capsys.readouterr().out == "Node manager-22 removed\n"
