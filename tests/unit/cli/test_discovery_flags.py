"""`--no-discovery` of `warren service create`, `--discovery`/`--no-discovery` of `service update` and
`discovery:` in `warren apply -f`: sent when given, and a stored spec without the key reads as on (so
`apply` of `discovery: true` changes nothing). And a service name that is not a DNS name is refused
before anything is sent, saying why."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.unit.cli.fake_api import NOW, FakeManager, run
from tests.unit.cli.test_apply_cmds import Manager, apply, write
from warren.cli import specs
from warren.cli.main import main

SPEC: dict[str, Any] = {"image": "nginx", "driver": "docker", "command": None, "replicas": 1,
                        "mode": "replicated", "stop_timeout_s": 10.0}
WEB = {"id": "svc-1", "name": "web", "spec": SPEC, "version": 12, "created_at": NOW - 600,
       "updated_at": NOW - 60, "update_status": None, "has_previous": False, "replicas_running": 1,
       "replicas_desired": 1}


def created(request: httpx.Request) -> httpx.Response:
    body = json.loads(request.content)
    return httpx.Response(201, json={"id": "svc-9", "name": body["name"], "version": 7, "spec": body})


def patched(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json={**WEB, "version": 13, "spec": {**SPEC, **json.loads(request.content)}})


def patches(fake: FakeManager) -> int:
    return len([r for r in fake.requests if r.method == "PATCH"])


def test_create_sends_discovery_only_when_turned_off() -> None:
    fake = FakeManager({("POST", "/v1/services"): created})
    assert run(fake, "service", "create", "-d", "web", "--image", "nginx", "--no-discovery") == 0
    assert fake.body()["discovery"] is False
    assert run(fake, "service", "create", "-d", "web", "--image", "nginx") == 0
    assert "discovery" not in fake.body()


def test_update_turns_discovery_off_and_on_and_on_is_no_change_while_on() -> None:
    fake = FakeManager({("GET", "/v1/services/web"): WEB, ("PATCH", "/v1/services/web"): patched})
    assert run(fake, "service", "update", "-d", "web", "--no-discovery") == 0
    assert fake.body() == {"discovery": False}
    writes = patches(fake)
    run(fake, "service", "update", "-d", "web", "--discovery")  # a spec without the key: on already
    assert patches(fake) == writes
    off = FakeManager({("GET", "/v1/services/web"): {**WEB, "spec": {**SPEC, "discovery": False}},
                       ("PATCH", "/v1/services/web"): patched})
    assert run(off, "service", "update", "-d", "web", "--discovery") == 0
    assert off.body() == {"discovery": True}


def test_create_has_no_discovery_flag_to_turn_it_on(capsys: pytest.CaptureFixture[str]) -> None:
    fake = FakeManager({})
    assert run(fake, "service", "create", "-d", "web", "--image", "nginx", "--discovery") == 2
    assert "unrecognized arguments: --discovery" in capsys.readouterr().err
    assert fake.requests == []


def test_the_help_says_what_discovery_is(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["service", "create", "--help"]) == 0
    help_text = " ".join(capsys.readouterr().out.split())
    assert "--no-discovery other tasks do not find this service's tasks by name" in help_text
    assert "tasks.NAME (all of them); default: they do" in help_text
    assert main(["service", "update", "--help"]) == 0
    help_text = " ".join(capsys.readouterr().out.split())
    assert "--discovery, --no-discovery whether other tasks find this service's tasks by name" in help_text
    assert "(changing it restarts no task)" in help_text


def test_apply_takes_discovery(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    manager = Manager()
    path = write(tmp_path, "name: web\nimage: nginx\ndiscovery: false\n")
    assert apply(manager, "-f", path) == 0
    assert manager.services["web"]["spec"]["discovery"] is False
    assert apply(manager, "-f", path) == 0
    assert capsys.readouterr().out.endswith("service/web unchanged\n")
    bad = write(tmp_path, "name: web\nimage: nginx\ndiscovery: maybe\n", "bad.yaml")
    assert apply(manager, "-f", bad) == 1
    assert "discovery" in capsys.readouterr().err
    # A stored spec without the key (written before discovery, or left on) reads as on.
    assert specs.changed_fields({"image": "nginx"}, {"discovery": True}) == {}
    assert specs.changed_fields({"image": "nginx"}, {"discovery": False}) == {"discovery": False}


@pytest.mark.parametrize("name", ["Web", "web_1", "-web", "web-", "a" * 64, "web.warren"])
def test_a_name_that_is_not_a_dns_label_is_refused_before_sending(
    name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    fake = FakeManager({("POST", "/v1/services"): created})
    assert run(fake, "service", "create", "-d", "--image", "nginx", "--", name) == 2
    err = capsys.readouterr().err
    assert err.startswith(
        "warren: argument NAME: a service name is a DNS name (tasks find the service by it): 1 to 63 "
        f"lowercase letters, digits and '-', beginning and ending with a letter or digit (got {name!r})"), err
    assert fake.requests == []


def test_a_name_of_63_characters_is_taken() -> None:
    fake = FakeManager({("POST", "/v1/services"): created})
    assert run(fake, "service", "create", "-d", "--image", "nginx", "a" * 63) == 0
    assert fake.body()["name"] == "a" * 63
