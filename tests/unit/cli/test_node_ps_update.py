"""`warren node ps | update`, and `ls`/`list` as one command, through `main` against a FakeManager."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.unit.cli.fake_api import NOW, FakeManager, run, task
from warren.cli import service_cmds

WORKER = {"name": "worker-1", "role": "worker", "state": "ready", "availability": "active", "raft_id": None,
          "api_addr": "10.0.0.5", "raft_addr": None, "labels": {"zone": "a"}, "operator_labels": {},
          "resources": {}, "created_at": NOW, "updated_at": NOW, "version": 3}


def test_node_ps_lists_each_services_tasks_on_the_node(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(service_cmds, "now", lambda: NOW)
    api_task: dict[str, Any] = {**task("a1", 1, "running", age=30), "service_id": "svc-2",
                                "service_name": "api", "name": "api.1"}
    tasks = [task("w1", 1, "running", age=5), task("w0", 1, "failed", age=60, message="exit 1"),
             task("w-old", 1, "shutdown", age=90), api_task]
    fake = FakeManager({("GET", "/v1/nodes/worker-1"): WORKER, ("GET", "/v1/tasks"): tasks})
    assert run(fake, "node", "ps", "worker-1") == 0
    assert fake.requests[-1].url.params["node"] == "worker-1"
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[:2] for line in lines] == [
        ["ID", "NAME"], ["a1", "api.1"], ["w1", "web.1"], ["w0", "\\_"],  # the latest finished one only
    ]
    assert "running 33s ago" in lines[1] and "exit 1" in lines[3]
    assert run(fake, "node", "ps", "--all", "worker-1", "-o", "json") == 0
    assert {t["id"] for t in json.loads(capsys.readouterr().out)} == {"a1", "w1", "w0", "w-old"}


def test_node_ps_of_an_unknown_node_is_an_error(capsys: pytest.CaptureFixture[str]) -> None:
    missing = httpx.Response(404, json={"error": "not_found", "message": "no node named 'ghost'"})
    fake = FakeManager({("GET", "/v1/nodes/ghost"): lambda r: missing, ("GET", "/v1/tasks"): []})
    assert run(fake, "node", "ps", "ghost") == 1
    assert capsys.readouterr().err == "warren: no node named 'ghost'\n"
    assert [r.url.path for r in fake.requests] == ["/v1/nodes/ghost"]


def test_node_update_adds_and_removes_labels(capsys: pytest.CaptureFixture[str]) -> None:
    def labelled(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        operator = {k: v for k, v in body["add"].items() if k not in body["remove"]}
        return httpx.Response(200, json={**WORKER, "operator_labels": operator,
                                         "labels": {**WORKER["labels"], **operator}})

    fake = FakeManager({("POST", "/v1/nodes/worker-1/labels"): labelled})
    argv = ["node", "update", "--label-add", "zone=eu", "--label-add", "disk=ssd", "--label-rm", "gpu",
            "--label-rm", "gpu", "worker-1"]
    assert run(fake, *argv) == 0
    assert fake.body() == {"add": {"zone": "eu", "disk": "ssd"}, "remove": ["gpu"]}
    assert capsys.readouterr().out == "Node worker-1 updated; labels: disk=ssd, zone=eu\n"


@pytest.mark.parametrize(("argv", "expected"), [
    (["node", "update", "worker-1"], "nothing to change: give --label-add K=V or --label-rm K"),
    (["node", "update", "--label-add", "zone", "worker-1"], "expected KEY=VALUE, got 'zone'"),
    (["node", "update", "--label-add", "a=1", "--label-rm", "a", "worker-1"], "label 'a' is both added and"),
])
def test_node_update_usage_errors(argv: list[str], expected: str, capsys: pytest.CaptureFixture[str]) -> None:
    fake = FakeManager({})
    assert run(fake, *argv) == 2
    assert expected in capsys.readouterr().err and fake.requests == []


@pytest.mark.parametrize("group", ["node", "service", "secret", "config", "volume"])
def test_ls_and_list_are_one_command_shown_once(group: str, capsys: pytest.CaptureFixture[str]) -> None:
    path = {"node": "/v1/nodes", "service": "/v1/services", "secret": "/v1/secrets", "config": "/v1/configs",
            "volume": "/v1/volumes"}[group]
    fake = FakeManager({("GET", path): []})
    assert run(fake, group, "ls", "-o", "json") == 0 and run(fake, group, "list", "-o", "json") == 0
    assert [r.url.path for r in fake.requests] == [path, path]
    capsys.readouterr()
    assert run(fake, group, "--help") == 0
    listed = [line.split()[0] for line in capsys.readouterr().out.splitlines() if line.startswith("    ")]
    assert listed.count("ls") == 1 and "list" not in listed
