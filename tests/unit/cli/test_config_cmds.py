"""`warren config ...` and the services' --config flags through `main`, with the manager replaced by
httpx.MockTransport: what is sent (the content in base64), what is printed (text as it is, else base64),
and how a config reference is written on the command line."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.unit.cli.fake_api import NOW, FakeManager, run
from warren.cli.specs import parse_config_ref

TEXT = "server {\n  listen 80;\n}\n"
CONFIG = {"id": "cfg-0a1b2c", "name": "nginx-conf-v1", "size": len(TEXT), "digest": "ab" * 32,
          "created_at": NOW, "updated_at": NOW, "version": 7, "services": ["web"]}
SPEC: dict[str, Any] = {"image": "nginx:1.27", "replicas": 1,
                        "configs": [{"name": "nginx-conf-v1", "target": "/etc/nginx/conf.d/default.conf"},
                                    {"name": "motd-v1"}]}
WEB = {"id": "svc-1", "name": "web", "version": 8, "spec": SPEC, "created_at": NOW, "updated_at": NOW}


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def with_data(data: bytes) -> dict[str, Any]:
    return {**CONFIG, "data": b64(data)}


def test_create_from_a_file_and_from_stdin_sends_the_content_in_base64(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    fake = FakeManager({("POST", "/v1/configs"): CONFIG})
    path = tmp_path / "default.conf"
    path.write_text(TEXT)
    assert run(fake, "config", "create", "nginx-conf-v1", str(path)) == 0
    assert fake.body() == {"name": "nginx-conf-v1", "data": b64(TEXT.encode())}
    assert capsys.readouterr().out == f"Config nginx-conf-v1 created (cfg-0a1b2c, {len(TEXT)} bytes)\n"
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b"\x00\xffbinary")))
    assert run(fake, "config", "create", "blob-v1", "-") == 0
    assert fake.body() == {"name": "blob-v1", "data": b64(b"\x00\xffbinary")}


def test_create_refuses_an_empty_content_and_needs_a_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake = FakeManager({})
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    assert run(fake, "config", "create", "x", str(empty)) == 2
    assert "content is empty" in capsys.readouterr().err
    assert run(fake, "config", "create", "x") == 2
    assert fake.requests == []


def test_list_shows_sizes_and_users(capsys: pytest.CaptureFixture[str]) -> None:
    fake = FakeManager({("GET", "/v1/configs"): [CONFIG, {**CONFIG, "name": "idle-v1", "services": []}]})
    assert run(fake, "config", "ls") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["NAME", "ID", "SIZE", "SERVICES", "VERSION"]
    assert lines[1].split() == ["nginx-conf-v1", "cfg-0a1b2c", str(len(TEXT)), "web", "7"]
    assert lines[2].split()[3] == "-"
    assert run(fake, "config", "list") == 0 and capsys.readouterr().out.splitlines() == lines


def test_inspect_shows_text_as_it_is_and_anything_else_in_base64(capsys: pytest.CaptureFixture[str]) -> None:
    fake = FakeManager({("GET", "/v1/configs/nginx-conf-v1"): with_data(TEXT.encode())})
    assert run(fake, "config", "inspect", "nginx-conf-v1") == 0
    out = capsys.readouterr().out
    assert "digest" in out and out.endswith("CONTENT:\n" + TEXT)
    assert "data" not in out.split("CONTENT:")[0]
    # A terminal escape in a text config is shown escaped, never sent to the terminal.
    fake = FakeManager({("GET", "/v1/configs/nginx-conf-v1"): with_data(b"title \x1b]0;owned\x07\n")})
    assert run(fake, "config", "inspect", "nginx-conf-v1") == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\\x1b]0;owned" in out
    binary = b"\x00\xff\xfe"
    fake = FakeManager({("GET", "/v1/configs/nginx-conf-v1"): with_data(binary)})
    assert run(fake, "config", "inspect", "nginx-conf-v1") == 0
    assert capsys.readouterr().out.endswith(f"CONTENT (not UTF-8 text; base64):\n{b64(binary)}\n")
    assert run(fake, "config", "inspect", "nginx-conf-v1", "-o", "json") == 0
    assert json.loads(capsys.readouterr().out)["data"] == b64(binary)


def test_rm_says_what_the_manager_refused(capsys: pytest.CaptureFixture[str]) -> None:
    in_use = httpx.Response(409, json={"error": "conflict", "message": "config 'nginx-conf-v1' is in use by "
                                       "service web: take it out of their specs first"})
    fake = FakeManager({("DELETE", "/v1/configs/nginx-conf-v1"): lambda r: in_use,
                        ("DELETE", "/v1/configs/idle-v1"): {"removed": "idle-v1"}})
    assert run(fake, "config", "rm", "nginx-conf-v1") == 1
    assert "in use by service web" in capsys.readouterr().err
    assert run(fake, "config", "rm", "idle-v1") == 0
    assert capsys.readouterr().out == "Config idle-v1 removed\n"


# -- references: service create --config, update --config-add/--config-rm ---------------------------


@pytest.mark.parametrize(
    ("text", "ref"),
    [
        ("app-v1", {"name": "app-v1"}),
        ("app-v1,target=/etc/app.conf", {"name": "app-v1", "target": "/etc/app.conf"}),
        ("app-v1,mode=0440,target=/a", {"name": "app-v1", "mode": 0o440, "target": "/a"}),
        ("app-v1, mode=0o600", {"name": "app-v1", "mode": 0o600}),
        ("app-v1,mode=444", {"name": "app-v1", "mode": 0o444}),
    ],
)
def test_a_config_reference_is_written_name_then_options(text: str, ref: dict[str, Any]) -> None:
    assert parse_config_ref(text) == ref


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("app-v1,mode=0888", "octal"),
        ("app-v1,mode=", "octal"),
        ("app-v1,uid=0", "expected target=/PATH or mode=OCTAL"),
        ("app-v1,mode=1,mode=2", "each once"),
        (",target=/a", "expected NAME"),
        ("target=/a", "expected NAME"),
    ],
)
def test_a_bad_reference_is_refused_saying_why(value: str, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        parse_config_ref(value)


def test_create_sends_each_config_reference(capsys: pytest.CaptureFixture[str]) -> None:
    fake = FakeManager({("POST", "/v1/services"): WEB})
    assert run(fake, "service", "create", "-d", "web", "--image", "nginx:1.27",
               "--config", "nginx-conf-v1,target=/etc/nginx/conf.d/default.conf",
               "--config", "motd-v1,mode=0400") == 0
    assert fake.body()["configs"] == [
        {"name": "nginx-conf-v1", "target": "/etc/nginx/conf.d/default.conf"},
        {"name": "motd-v1", "mode": 0o400},
    ]


@pytest.mark.parametrize(
    ("flags", "fragment"),
    [
        (["--config", "app,mode=9"], "argument --config: mode '9'"),
        (["--config", "app,target=etc/x"], "argument --config:"),
        (["--config", "a", "--config", "b,target=/a"], "two mounts or configs at /a"),
        (["--config", "a,target=/run/secrets/a"], "where secrets are mounted"),
    ],
)
def test_bad_config_flags_are_usage_errors(
    flags: list[str], fragment: str, capsys: pytest.CaptureFixture[str]
) -> None:
    fake = FakeManager({})
    assert run(fake, "service", "create", "-d", "web", "--image", "nginx", *flags) == 2
    assert fragment in capsys.readouterr().err
    assert fake.requests == []


def test_update_adds_and_removes_configs_by_name() -> None:
    def patched(request: httpx.Request) -> httpx.Response:
        spec = {**SPEC, **json.loads(request.content)}
        return httpx.Response(200, json={**WEB, "version": 9, "spec": spec})

    fake = FakeManager({("GET", "/v1/services/web"): WEB, ("PATCH", "/v1/services/web"): patched})
    assert run(fake, "service", "update", "-d", "web", "--config-rm", "nginx-conf-v1",
               "--config-add", "nginx-conf-v2,target=/etc/nginx/conf.d/default.conf",
               "--config-add", "motd-v1,mode=0440") == 0
    # motd-v1 is replaced (same name, other mode); nginx-conf-v1 goes, nginx-conf-v2 comes. Sent as
    # the API reads them (defaults filled in), as every nested part is.
    assert fake.body() == {"configs": [
        {"name": "motd-v1", "mode": 0o440},
        {"name": "nginx-conf-v2", "target": "/etc/nginx/conf.d/default.conf", "mode": 0o444},
    ]}
    writes = len(fake.requests)
    # What the service already has changes nothing (the default mode written or not).
    assert run(fake, "service", "update", "-d", "web", "--config-add", "motd-v1,mode=0444") == 0
    assert [r.method for r in fake.requests[writes:]] == ["GET"]


def test_a_file_larger_than_any_manager_takes_is_refused_before_it_is_read_whole(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from warren.cli.specs import CONFIG_READ_LIMIT

    big = tmp_path / "big"
    big.write_bytes(b"x" * (CONFIG_READ_LIMIT + 1))
    fake = FakeManager({})
    assert run(fake, "config", "create", "big-v1", str(big)) == 2
    assert "more than any manager accepts for a config" in capsys.readouterr().err
    assert fake.requests == []
