"""`warren apply -f` with configs: configs documents (a file relative to the apply file, or inline
content) created before the services that name them, left alone when the cluster has the same
content, refused when it has another; a service's `configs:` in both its forms."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.unit.cli.test_apply_cmds import Manager, apply, write


class ConfigManager(Manager):
    """The apply tests' manager, which also keeps configs (POST, and GET /v1/configs with digests)."""

    def __init__(self) -> None:
        super().__init__()
        self.configs: dict[str, dict[str, Any]] = {}

    def handle(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if request.method == "GET" and path == "/v1/configs":
            self.requests.append(request)
            assert request.url.params.get("consistent") == "true"
            return httpx.Response(200, json=list(self.configs.values()))
        if request.method == "POST" and path == "/v1/configs":
            self.requests.append(request)
            body = json.loads(request.content)
            content = base64.b64decode(body["data"])
            config = {"id": f"cfg-{body['name']}", "name": body["name"], "size": len(content),
                      "digest": hashlib.sha256(content).hexdigest(), "version": 3, "services": []}
            self.configs[body["name"]] = config
            return httpx.Response(201, json=config)
        if request.method == "POST" and path == "/v1/services":
            names = [r["name"] for r in json.loads(request.content).get("configs", [])]
            assert set(names) <= set(self.configs), "a service is created after the configs it names"
        return super().handle(request)


STACK = """\
configs:
  nginx-conf-v1: {file: ./nginx/default.conf}
  motd-v1: {content: "hello\\n"}
---
name: web
image: nginx:1.27
configs:
  - nginx-conf-v1,target=/etc/nginx/conf.d/default.conf
  - {name: motd-v1, target: /etc/motd, mode: "0440"}
"""
NGINX = b"server { listen 80; }\n"


def stack(tmp_path: Path, text: str = STACK) -> str:
    (tmp_path / "nginx").mkdir(exist_ok=True)
    (tmp_path / "nginx" / "default.conf").write_bytes(NGINX)
    return write(tmp_path, text)


def test_configs_are_created_before_the_services_that_name_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    manager = ConfigManager()
    path = stack(tmp_path)
    monkeypatch.chdir("/")  # the file is found next to the apply file, not in the working directory
    assert apply(manager, "-f", path) == 0
    out = capsys.readouterr().out
    assert out == "config/nginx-conf-v1 created\nconfig/motd-v1 created\nservice/web created\n"
    (_, _, nginx), (_, _, motd), (_, _, web) = manager.writes()
    assert base64.b64decode(nginx["data"]) == NGINX and base64.b64decode(motd["data"]) == b"hello\n"
    assert web["configs"] == [
        {"name": "nginx-conf-v1", "target": "/etc/nginx/conf.d/default.conf", "mode": 0o444},
        {"name": "motd-v1", "target": "/etc/motd", "mode": 0o440},
    ]
    writes = len(manager.writes())
    assert apply(manager, "-f", path) == 0
    out = capsys.readouterr().out
    assert out == "config/nginx-conf-v1 unchanged\nconfig/motd-v1 unchanged\nservice/web unchanged\n"
    assert len(manager.writes()) == writes


def test_a_config_whose_content_changed_is_refused_and_nothing_changes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manager = ConfigManager()
    path = stack(tmp_path)
    assert apply(manager, "-f", path) == 0
    capsys.readouterr()
    writes = len(manager.writes())
    (tmp_path / "nginx" / "default.conf").write_bytes(b"server { listen 8080; }\n")
    changed = STACK.replace("image: nginx:1.27", "image: nginx:1.28")
    assert apply(manager, "-f", write(tmp_path, changed)) == 1
    err = capsys.readouterr().err
    assert "configs.nginx-conf-v1: config 'nginx-conf-v1' exists with a different content" in err
    assert "configs are immutable: give the new content a new name" in err
    assert len(manager.writes()) == writes, "nothing was changed, not even the service's image"


def test_a_service_naming_an_unknown_config_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manager = ConfigManager()
    assert apply(manager, "-f", write(tmp_path, "name: web\nimage: busybox\nconfigs: [nope-v1]\n")) == 1
    assert "config 'nope-v1' does not exist and no configs document declares it" in capsys.readouterr().err
    assert manager.writes() == []


def test_dry_run_and_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    manager = ConfigManager()
    path = stack(tmp_path)
    assert apply(manager, "-f", path, "--dry-run") == 0
    assert capsys.readouterr().out.startswith("config/nginx-conf-v1 created (dry run)\n")
    assert manager.writes() == []
    assert apply(manager, "-f", path, "-o", "json") == 0
    results = json.loads(capsys.readouterr().out)
    assert [(r["kind"], r["name"], r["result"]) for r in results] == [
        ("config", "nginx-conf-v1", "created"), ("config", "motd-v1", "created"),
        ("service", "web", "created"),
    ]


def test_a_stack_without_configs_asks_nothing_about_them(tmp_path: Path) -> None:
    manager = ConfigManager()
    assert apply(manager, "-f", write(tmp_path, "name: web\nimage: busybox\n")) == 0
    assert all(r.url.path != "/v1/configs" for r in manager.requests)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("configs: {app-v1: {file: ./absent.conf}}\n", "configs.app-v1.file: cannot read"),
        ("configs: {app-v1: {file: ./a, content: x}}\n", "exactly one"),
        ("configs: {app-v1: {content: ''}}\n", "content is empty"),
        ("configs: {App_V1: {content: x}}\n", "configs.App_V1: a config name is"),
        ("configs: {app-v1: {content: 3}}\n", "content: expected text"),
        ("kind: service\nconfigs: {app-v1: {content: x}}\n", "a configs document holds `configs:` only"),
        ("configs: {app-v1: {content: x}}\n---\nconfigs: {app-v1: {content: y}}\n", "with another content"),
        ("name: web\nimage: busybox\nconfigs: ['app-v1,mode=999']\n", "configs.0: mode '999'"),
        ("name: web\nimage: busybox\nconfigs: [{name: app-v1, target: relative}]\n", "configs.0"),
    ],
)
def test_bad_configs_are_named_by_file_and_document(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, fragment: str
) -> None:
    manager = ConfigManager()
    assert apply(manager, "-f", write(tmp_path, text)) == 1
    err = capsys.readouterr().err
    assert "stack.yaml: document" in err and fragment in err, err
    assert manager.writes() == []
