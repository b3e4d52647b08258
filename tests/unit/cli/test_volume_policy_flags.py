"""`--volume-policy` of `warren service create | update` and `volume_policy:` in `warren apply -f`: sent
when given, refused when not one of the policies, and a stored spec without one reads as the default
`wait` (so `apply` of `volume_policy: wait` changes nothing)."""

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

SPEC: dict[str, Any] = {"image": "redis:7", "driver": "docker", "command": None, "replicas": 1,
                        "mode": "replicated", "stop_timeout_s": 10.0}
DB = {"id": "svc-1", "name": "db", "spec": SPEC, "version": 12, "created_at": NOW - 600,
      "updated_at": NOW - 60, "update_status": None, "has_previous": False, "replicas_running": 1,
      "replicas_desired": 1}


def created(request: httpx.Request) -> httpx.Response:
    body = json.loads(request.content)
    return httpx.Response(201, json={"id": "svc-9", "name": body["name"], "version": 7, "spec": body})


def patched(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json={**DB, "version": 13, "spec": {**SPEC, **json.loads(request.content)}})


def test_create_and_update_send_the_policy_only_when_it_changes() -> None:
    fake = FakeManager({("POST", "/v1/services"): created, ("GET", "/v1/services/db"): DB,
                        ("PATCH", "/v1/services/db"): patched})
    assert run(fake, "service", "create", "-d", "db", "--image", "redis:7",
               "--volume-policy", "reschedule") == 0
    assert fake.body()["volume_policy"] == "reschedule"
    assert run(fake, "service", "create", "-d", "db", "--image", "redis:7") == 0
    assert "volume_policy" not in fake.body()
    assert run(fake, "service", "update", "-d", "db", "--volume-policy", "reschedule") == 0
    assert fake.body() == {"volume_policy": "reschedule"}
    writes = len([r for r in fake.requests if r.method == "PATCH"])
    # `wait` is what a spec without a policy has: nothing to change.
    run(fake, "service", "update", "-d", "db", "--volume-policy", "wait")
    assert len([r for r in fake.requests if r.method == "PATCH"]) == writes


def test_an_unknown_policy_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    fake = FakeManager({})
    assert run(fake, "service", "create", "-d", "db", "--image", "x", "--volume-policy", "move") == 2
    assert "--volume-policy: invalid choice: 'move'" in capsys.readouterr().err
    assert fake.requests == []


def test_the_help_states_the_default(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["service", "create", "--help"]) == 0
    help_text = " ".join(capsys.readouterr().out.split())
    assert "--volume-policy {wait,reschedule}" in help_text
    assert "changing it restarts no task" in help_text and "(default wait)" in help_text


def test_apply_takes_volume_policy(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    manager = Manager()
    path = write(tmp_path, "name: db\nimage: redis:7\nvolume_policy: reschedule\n")
    assert apply(manager, "-f", path) == 0
    assert manager.services["db"]["spec"]["volume_policy"] == "reschedule"
    assert apply(manager, "-f", path) == 0
    assert capsys.readouterr().out.endswith("service/db unchanged\n")
    bad = write(tmp_path, "name: db\nimage: redis:7\nvolume_policy: later\n", "bad.yaml")
    assert apply(manager, "-f", bad) == 1
    assert "volume_policy" in capsys.readouterr().err
    # A stored spec without one (written before policies, or left at the default) reads as `wait`.
    assert specs.changed_fields({"image": "redis:7"}, {"volume_policy": "wait"}) == {}
    assert specs.changed_fields({"image": "redis:7"}, {"volume_policy": "reschedule"}) == {
        "volume_policy": "reschedule"}
