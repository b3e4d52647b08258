"""`warren secret ...` and the services' --secret flags through `main`, with the manager replaced by
httpx.MockTransport: what is sent (the value in base64, once), what is printed (never the value)."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from warren.cli.main import main
from warren.client import ManagerClient

VALUE = b"p4ss\nw0rd\x00\xff"
SECRET = {"id": "sec-0a1b2c", "name": "db-password", "created_at": 1790000000.0, "updated_at": 1790000000.0,
          "version": 7, "services": ["web"]}
SPEC = {"image": "nginx:1.27", "replicas": 1, "secrets": ["db-password"]}


class Manager:
    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        key = (request.method, request.url.path)
        if key == ("POST", "/v1/secrets"):
            return httpx.Response(201, json=SECRET)
        if key == ("GET", "/v1/secrets"):
            return httpx.Response(200, json=[SECRET, {**SECRET, "name": "idle", "services": []}])
        if key == ("GET", "/v1/secrets/db-password"):
            return httpx.Response(200, json=SECRET)
        if key == ("DELETE", "/v1/secrets/db-password"):
            message = "secret 'db-password' is in use by service web: take it out of their specs first"
            return httpx.Response(409, json={"error": "conflict", "message": message})
        if key == ("POST", "/v1/services"):
            return httpx.Response(201, json={"id": "svc-1", "name": "web", "version": 8, "spec": SPEC,
                                             "created_at": 1.0, "updated_at": 1.0})
        if key == ("GET", "/v1/services/web"):
            return httpx.Response(200, json={"id": "svc-1", "name": "web", "version": 8, "spec": SPEC,
                                             "created_at": 1.0, "updated_at": 1.0})
        if key == ("PATCH", "/v1/services/web"):
            return httpx.Response(200, json={"id": "svc-1", "name": "web", "version": 9, "spec": SPEC,
                                             "created_at": 1.0, "updated_at": 1.0})
        return httpx.Response(404, json={"error": "not_found", "message": f"no route {request.url.path}"})

    def connect(self, manager: str) -> ManagerClient:
        return ManagerClient(manager, transport=httpx.MockTransport(self.handle), sleep=lambda s: None)

    def body(self, index: int = -1) -> Any:
        return json.loads(self.requests[index].content)


def run(m: Manager, capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(["--manager", "10.0.0.1:8080", *argv], connect=m.connect)
    out, err = capsys.readouterr()
    return status, out, err


def test_create_from_a_file_sends_the_value_once_in_base64_and_prints_only_its_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "value"
    path.write_bytes(VALUE)
    m = Manager()
    status, out, err = run(m, capsys, "secret", "create", "db-password", str(path))
    assert (status, err) == (0, "")
    assert out == "Secret db-password created (sec-0a1b2c)\n"
    assert m.body() == {"name": "db-password", "data": base64.b64encode(VALUE).decode()}


def test_create_from_stdin_and_from_a_literal(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    m = Manager()
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(VALUE)))
    assert run(m, capsys, "secret", "create", "db-password", "-")[0] == 0
    assert base64.b64decode(m.body()["data"]) == VALUE
    status, out, _ = run(m, capsys, "secret", "create", "api-key", "--value", "literal text", "-o", "json")
    assert status == 0 and json.loads(out)["id"] == "sec-0a1b2c" and "literal text" not in out
    assert base64.b64decode(m.body()["data"]) == b"literal text"


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["secret", "create", "x"], "exactly one"),
        (["secret", "create", "x", "file", "--value", "v"], "exactly one"),
        (["secret", "create", "x", "--value", ""], "value is empty"),
    ],
)
def test_create_needs_exactly_one_non_empty_source(
    argv: list[str], fragment: str, capsys: pytest.CaptureFixture[str]
) -> None:
    m = Manager()
    status, _, err = run(m, capsys, *argv)
    assert status == 2 and fragment in err and not m.requests


def test_the_literal_flag_warns_about_shell_history(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["secret", "create", "--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "shell history" in out and "/run/secrets/NAME" in out


def test_ls_inspect_and_a_refused_rm(capsys: pytest.CaptureFixture[str]) -> None:
    m = Manager()
    status, out, _ = run(m, capsys, "secret", "ls")
    assert status == 0
    lines = out.splitlines()
    assert lines[0].split() == ["NAME", "ID", "SERVICES", "VERSION"]
    assert lines[1].split() == ["db-password", "sec-0a1b2c", "web", "7"]
    assert lines[2].split() == ["idle", "sec-0a1b2c", "-", "7"]
    status, out, _ = run(m, capsys, "secret", "inspect", "db-password", "-o", "yaml")
    assert status == 0 and "name: db-password" in out
    status, _, err = run(m, capsys, "secret", "rm", "db-password")
    assert status == 1 and err.startswith("warren: secret 'db-password' is in use by service web")


def test_service_flags_name_secrets(capsys: pytest.CaptureFixture[str]) -> None:
    m = Manager()
    argv = ["service", "create", "-d", "web", "--image", "nginx:1.27", "--secret", "db-password",
            "--secret", "tls"]
    assert run(m, capsys, *argv)[0] == 0
    assert m.body()["secrets"] == ["db-password", "tls"]
    update = ["service", "update", "-d", "web", "--secret-add", "api", "--secret-rm", "db-password"]
    assert run(m, capsys, *update)[0] == 0
    assert m.body() == {"secrets": ["api"]}
