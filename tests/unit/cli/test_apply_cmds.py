"""`warren apply -f`: YAML documents into API bodies, all-or-nothing checks, create/update/unchanged and
idempotence, against a fake manager that keeps services the way the real one does."""

from __future__ import annotations

import io
import json
import textwrap
from pathlib import Path
from typing import Any

import httpx
import pytest

from warren.api.models import ServiceCreate, ServiceUpdate
from warren.cli.apply_cmds import APPLY_EPILOG, load
from warren.cli.main import main
from warren.client import ManagerClient

STACK = """\
kind: service
name: web
image: nginx:1.27
replicas: 2
env: {TZ: UTC, PORT: 8080, DEBUG: true}
publish: ["8080:80", {host: 5353, container: 53, protocol: udp}]
resources: {cpus: 0.5, memory: 256m}
health: {kind: http, port: 80, path: /healthz, interval_s: 500ms, timeout_s: 1}
restart: {condition: on-failure, delay_s: "1m"}
update: {parallelism: 2, order: start-first, monitor_s: 1s}
stop_timeout_s: 30s
constraints: ["node.labels.zone==eu"]
---
name: worker
image: busybox
command: sh -c 'while true; do sleep 1; done'
mode: global
"""


class Manager:
    """Keeps services as the manager does: a create stores the whole spec with its defaults, a PATCH
    replaces the given fields with what the request model dumps (unset and None members left out)."""

    def __init__(self) -> None:
        self.services: dict[str, dict[str, Any]] = {}
        self.requests: list[httpx.Request] = []
        self.version = 10
        self.fail_create: set[str] = set()

    def writes(self) -> list[tuple[str, str, Any]]:
        return [(r.method, r.url.path, json.loads(r.content) if r.content else None)
                for r in self.requests if r.method != "GET"]

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = request.url.path
        if request.method == "GET" and path == "/v1/services":
            assert request.url.params.get("consistent") == "true", "apply compares with a consistent read"
            return httpx.Response(200, json=list(self.services.values()))
        self.version += 1
        if request.method == "POST" and path == "/v1/services":
            body = ServiceCreate.model_validate(json.loads(request.content))
            if body.name in self.fail_create:
                return httpx.Response(409, json={"error": "conflict", "message": f"{body.name} is taken"})
            service = {"id": f"svc-{body.name}", "name": body.name, "spec": body.model_dump(exclude={"name"}),
                       "version": self.version, "update_status": None}
            self.services[body.name] = service
            return httpx.Response(201, json=service)
        if request.method == "PATCH":
            name = path.rsplit("/", 1)[1]
            service = self.services[name]
            if request.headers.get("If-Match") != str(service["version"]):
                return httpx.Response(409, json={"error": "conflict", "message": "version mismatch"})
            changes = ServiceUpdate.model_validate(json.loads(request.content))
            service["spec"].update(changes.model_dump(exclude_unset=True, exclude_none=True))
            service["version"] = self.version
            return httpx.Response(200, json=service)
        return httpx.Response(404, json={"error": "not_found", "message": f"no route {path}"})

    def connect(self, manager: str) -> ManagerClient:
        return ManagerClient(manager, transport=httpx.MockTransport(self.handle), sleep=lambda s: None)


def write(tmp_path: Path, text: str, name: str = "stack.yaml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def apply(manager: Manager, *argv: str) -> int:
    return main(["apply", *argv], connect=manager.connect)


def test_apply_creates_services_with_every_syntax(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    manager = Manager()
    assert apply(manager, "-f", write(tmp_path, STACK)) == 0
    assert capsys.readouterr().out == "service/web created\nservice/worker created\n"
    (_, _, web), (_, _, worker) = manager.writes()
    assert web == {
        "name": "web", "image": "nginx:1.27", "replicas": 2,
        "env": {"TZ": "UTC", "PORT": "8080", "DEBUG": "true"},
        "publish": [{"host": 8080, "container": 80, "protocol": "tcp", "mode": "ingress"},
                    {"host": 5353, "container": 53, "protocol": "udp", "mode": "host"}],
        "resources": {"cpus": 0.5, "memory": 256 * 2**20},
        "health": {"kind": "http", "port": 80, "path": "/healthz", "interval_s": 0.5,
                   "timeout_s": 1.0, "retries": 3, "start_period_s": 0.0},
        "restart": {"condition": "on-failure", "delay_s": 60.0, "max_attempts": 0},
        "update": {"parallelism": 2, "delay_s": 0.0, "order": "start-first", "failure_action": "pause",
                   "monitor_s": 1.0},
        "stop_timeout_s": 30.0,
        "constraints": ["node.labels.zone==eu"],
    }
    assert worker == {"name": "worker", "image": "busybox", "mode": "global",
                      "command": ["sh", "-c", "while true; do sleep 1; done"]}


def test_applying_twice_changes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    manager = Manager()
    path = write(tmp_path, STACK)
    assert apply(manager, "-f", path) == 0
    capsys.readouterr()
    writes = len(manager.writes())
    assert apply(manager, "-f", path) == 0
    assert capsys.readouterr().out == "service/web unchanged\nservice/worker unchanged\n"
    assert len(manager.writes()) == writes, "an unchanged service is not written"


def test_apply_patches_only_the_changed_fields(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    manager = Manager()
    path = write(tmp_path, STACK)
    assert apply(manager, "-f", path) == 0
    capsys.readouterr()
    version = manager.services["web"]["version"]
    changed = STACK.replace("replicas: 2", "replicas: 3").replace("interval_s: 500ms", "interval_s: 2")
    write(tmp_path, changed)
    assert apply(manager, "-f", path) == 0
    assert capsys.readouterr().out == "service/web updated\nservice/worker unchanged\n"
    method, where, body = manager.writes()[-1]
    assert (method, where) == ("PATCH", "/v1/services/web")
    assert body == {"replicas": 3, "health": {"kind": "http", "port": 80, "path": "/healthz",
                                              "interval_s": 2.0, "timeout_s": 1.0, "retries": 3,
                                              "start_period_s": 0.0}}
    assert manager.requests[-1].headers["If-Match"] == str(version)
    # The manager now holds a PATCHed health part (without its None members): still the same spec.
    assert apply(manager, "-f", path) == 0
    assert capsys.readouterr().out == "service/web unchanged\nservice/worker unchanged\n"


def test_fields_left_out_keep_their_values(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    manager = Manager()
    assert apply(manager, "-f", write(tmp_path, STACK)) == 0
    manager.services["web"]["spec"]["replicas"] = 7  # scaled by hand since
    assert apply(manager, "-f", write(tmp_path, "name: web\nimage: nginx:1.27\n")) == 0
    assert capsys.readouterr().out.endswith("service/web unchanged\n")


def test_json_output_and_dry_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    manager = Manager()
    path = write(tmp_path, STACK)
    assert apply(manager, "-f", path, "--dry-run") == 0
    assert capsys.readouterr().out == "service/web created (dry run)\nservice/worker created (dry run)\n"
    assert manager.writes() == []
    assert apply(manager, "-f", path, "-o", "json") == 0
    results = json.loads(capsys.readouterr().out)
    assert [(r["name"], r["result"]) for r in results] == [("web", "created"), ("worker", "created")]
    assert "health" in results[0]["changed"] and isinstance(results[0]["version"], int)


def test_stdin_and_several_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    manager = Manager()
    monkeypatch.setattr("sys.stdin", io.StringIO("name: from-stdin\nimage: busybox\n"))
    other = write(tmp_path, "name: other\nimage: busybox\n", "other.yaml")
    assert apply(manager, "-f", "-", "-f", other) == 0
    assert capsys.readouterr().out == "service/from-stdin created\nservice/other created\n"


def test_one_bad_document_changes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    manager = Manager()
    bad = STACK + "---\nname: gamma\nimage: x\nreplicas: -3\n---\nname: delta\nimage: x\nreplicaz: 1\n"
    path = write(tmp_path, bad)
    assert apply(manager, "-f", path) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.splitlines() == [
        f"warren: {path}: document 3 (gamma): replicas: Input should be greater than or equal to 0",
        f"warren: {path}: document 4 (delta): replicaz: unknown field",
        "warren: 2 problems; nothing was changed",
    ]
    assert manager.requests == [], "nothing is read or written before every document is good"


@pytest.mark.parametrize(("text", "problem"), [
    ("name: a\nimage: x\n---\nname: b\nimage: [x\n",
     "document 2: invalid YAML at line 6, column 1: expected ',' or ']', but got '<stream end>'"),
    ("name: a\nimage: x\n---\n\tname: b\n", "document 2: invalid YAML at line 4, column 1"),
    ("kind: deployment\nname: a\nimage: x\n", "document 1 (a): kind: 'deployment' is not supported"),
    ("- name: a\n", "document 1: expected a mapping of service fields, got a list"),
    ("name: a\nimage: x\npublish: [5353:53]\n", "publish.0: got the number 321233: quote PUBLISHED:TARGET"),
    ("name: a\nimage: x\npublish: ['99999:80']\n", "publish.0: published port '99999' is not a port number"),
    ("name: a\nimage: x\nresources: {memory: 12q}\n", "resources.memory: invalid size '12q'"),
    ("name: a\nimage: x\nresources: {memory: 1k}\n", "resources.memory: Input should be greater than"),
    ("name: a\nimage: x\nhealth: {kind: tcp, interval_s: soon}\n", "health.interval_s: invalid duration"),
    ("name: a\nimage: x\nhealth: {kind: tcp}\n", "health: a tcp health check needs port"),
    ("name: a\nimage: x\nstop_timeout_s: true\n", "stop_timeout_s: expected seconds or a duration"),
    ("image: x\n", "document 1: name: required"),
    ("name: Bad_Name\nimage: x\n", "name: a service name is a DNS name (tasks find the service by it)"),
    ("name: a\nimage: x\ndriver: process\n", "a process-driver service needs command"),
    ("name: a\nimage: x\nconstraints: [nonsense]\n", "constraints.0: String should match pattern"),
    ("", "no service documents"),
    ("---\n---\n", "no service documents"),
    ("name: a\nimage: x\n---\nname: a\nimage: y\n", "document 2 (a): service 'a' is already in"),
])
def test_document_problems_name_the_file_and_document(
    text: str, problem: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manager = Manager()
    path = write(tmp_path, text)
    assert apply(manager, "-f", path) == 1
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1, lines  # one problem, one line
    assert lines[0].startswith(f"warren: {path}: ") and problem in lines[0], lines[0]
    assert manager.requests == []


def test_the_same_service_in_two_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    one = write(tmp_path, "name: a\nimage: x\n", "one.yaml")
    two = write(tmp_path, "name: b\nimage: x\n---\nname: a\nimage: y\n", "two.yaml")
    assert apply(Manager(), "-f", one, "-f", two) == 1
    assert capsys.readouterr().err.splitlines()[0] == (
        f"warren: {two}: document 2 (a): service 'a' is already in {one}: document 1"
    )


def test_null_cannot_remove_what_a_service_has(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    manager = Manager()
    path = write(tmp_path, STACK)
    assert apply(manager, "-f", path) == 0
    capsys.readouterr()
    health = "health: {kind: http, port: 80, path: /healthz, interval_s: 500ms, timeout_s: 1}"
    write(tmp_path, STACK.replace(health, "health: null").replace("replicas: 2", "replicas: 4"))
    writes = len(manager.writes())
    assert apply(manager, "-f", path) == 1
    err = capsys.readouterr().err
    assert f"{path}: document 1 (web): health: null cannot remove what service web has" in err
    assert len(manager.writes()) == writes, "nothing changes: not even the replicas"


def test_a_failed_write_stops_with_the_earlier_lines_printed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manager = Manager()
    manager.fail_create.add("worker")
    assert apply(manager, "-f", write(tmp_path, STACK)) == 1
    captured = capsys.readouterr()
    assert captured.out == "service/web created\n"
    assert captured.err == "warren: worker is taken\n"


def test_a_missing_file_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert apply(Manager(), "-f", str(tmp_path / "nope.yaml")) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nope.yaml" in err and "No such file" in err


def test_apply_needs_a_file(capsys: pytest.CaptureFixture[str]) -> None:
    assert apply(Manager()) == 2
    assert "the following arguments are required: -f/--filename" in capsys.readouterr().err


def test_the_example_in_the_help_is_valid() -> None:
    example = APPLY_EPILOG.split("\n\n", 1)[1].split("\n\nFields", 1)[0]
    documents, problems = load([("help", textwrap.dedent(example))])
    assert problems == []
    assert [d.name for d in documents] == ["web", "worker"]
    assert documents[0].wanted["health"]["interval_s"] == 2.0
    assert documents[1].wanted["command"] == ["sleep", "infinity"]
