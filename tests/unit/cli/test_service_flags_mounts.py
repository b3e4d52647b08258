"""`--mount` of `warren service create`, `--mount-add`/`--mount-rm` of `update`, and `mounts:` of
`apply -f`: Docker's syntax and spellings into the body's `mounts`, merged by target on update, and
refused as usage errors naming the flag (or the document's field)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.unit.cli.fake_api import NOW, FakeManager, run
from warren.cli import specs
from warren.cli.apply_cmds import load

MIB = 1024 * 1024

SPEC: dict[str, Any] = {
    "image": "db:1", "driver": "docker", "command": None, "replicas": 1, "mode": "replicated",
    "stop_timeout_s": 10.0,
    "mounts": [{"type": "volume", "source": "db-data", "target": "/var/lib/db"},
               {"type": "tmpfs", "target": "/cache"}],
}
DB = {"id": "svc-1", "name": "db", "spec": SPEC, "version": 12, "created_at": NOW - 600,
      "updated_at": NOW - 60, "update_status": None, "has_previous": False,
      "replicas_running": 1, "replicas_desired": 1}


def created(request: httpx.Request) -> httpx.Response:
    body = json.loads(request.content)
    return httpx.Response(201, json={"id": "svc-9", "name": body["name"], "version": 7, "spec": body})


def patched(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json={**DB, "version": 13, "spec": {**SPEC, **json.loads(request.content)}})


def test_every_spelling_of_mount_lands_in_mounts() -> None:
    fake = FakeManager({("POST", "/v1/services"): created})
    assert run(fake, "service", "create", "-d", "db", "--image", "db:1",
               "--mount", "type=volume,src=db-data,dst=/var/lib/db",
               "--mount", "type=bind,source=/srv/media,target=/media,readonly",
               "--mount", "type=bind,src=/srv/conf,destination=/etc/conf,ro=true",
               "--mount", "type=bind,src=/srv/logs,dst=/logs,readonly=false",
               "--mount", "type=tmpfs,dst=/cache,tmpfs-size=64m",
               "--mount", "type=tmpfs,dst=/scratch,size=1g",
               "--mount", "src=plain,dst=/plain") == 0  # type=volume is Docker's default
    assert fake.body()["mounts"] == [
        {"type": "volume", "source": "db-data", "target": "/var/lib/db"},
        {"type": "bind", "source": "/srv/media", "target": "/media", "read_only": True},
        {"type": "bind", "source": "/srv/conf", "target": "/etc/conf", "read_only": True},
        {"type": "bind", "source": "/srv/logs", "target": "/logs", "read_only": False},
        {"type": "tmpfs", "target": "/cache", "size": 64 * MIB},
        {"type": "tmpfs", "target": "/scratch", "size": 1024 * MIB},
        {"type": "volume", "source": "plain", "target": "/plain"},
    ]


def test_a_quoted_field_may_hold_a_comma() -> None:
    assert specs.parse_mount('type=bind,"src=/srv/a,b",dst=/a') == {
        "type": "bind", "source": "/srv/a,b", "target": "/a"}


def test_no_mount_no_key() -> None:
    fake = FakeManager({("POST", "/v1/services"): created})
    assert run(fake, "service", "create", "-d", "db", "--image", "db:1") == 0
    assert "mounts" not in fake.body()


@pytest.mark.parametrize(("flags", "expected"), [
    (["--mount", "type=nfs,src=a,dst=/a"],
     "argument --mount: mounts[0].type: Input should be 'volume', 'bind' or 'tmpfs'"),
    (["--mount", "type=volume,src=a,dst=/a,colour=red"], "argument --mount: unknown key 'colour'"),
    (["--mount", "type=volume,src=a,src=b,dst=/a"], "argument --mount: src is given twice"),
    (["--mount", "type=volume,src,dst=/a"], "argument --mount: src needs a value"),
    (["--mount", "type=volume,src=a,dst=/a,ro=maybe"], "argument --mount: ro='maybe'"),
    (["--mount", "type=tmpfs,dst=/a,size=lots"], "argument --mount: invalid size 'lots'"),
    (["--mount", 'type=bind,"src=/a,dst=/b'], "argument --mount:"),
    (["--mount", "type=volume,dst=/a"], "argument --mount: mounts[0]: source: a volume mount needs a source"),
    (["--mount", "type=volume,src=Data,dst=/a"], "argument --mount: mounts[0]: source: a volume name is"),
    (["--mount", "type=bind,src=/srv/../etc,dst=/a"],
     "argument --mount: mounts[0]: source: must be a normalised absolute path"),
    (["--mount", "type=bind,src=/srv,dst=/a/../b"], "argument --mount: mounts[0]: target: must be a normal"),
    (["--mount", "type=tmpfs,src=x,dst=/a"], "argument --mount: mounts[0]: source: a tmpfs mount has no"),
    (["--mount", "type=volume,src=a,dst=/a,size=1m"], "argument --mount: mounts[0]: size: only a tmpfs"),
    (["--mount", "type=tmpfs,dst=/a", "--mount", "type=volume,src=b,dst=/a"],
     "argument --mount: mounts: two mounts or configs at /a"),
    (["--mount", "type=tmpfs,dst=/run/secrets"], "argument --mount: mounts: /run/secrets is where secrets"),
])
def test_bad_mounts_are_usage_errors(
    flags: list[str], expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    fake = FakeManager({("POST", "/v1/services"): created})
    assert run(fake, "service", "create", "-d", "db", "--image", "db:1", *flags) == 2
    err = capsys.readouterr().err
    assert err.startswith("warren: ") and expected in err, err
    assert fake.requests == []


def test_update_adds_replaces_and_removes_by_target(capsys: pytest.CaptureFixture[str]) -> None:
    fake = FakeManager({("GET", "/v1/services/db"): DB, ("PATCH", "/v1/services/db"): patched})
    assert run(fake, "service", "update", "-d", "db", "--mount-rm", "/cache/",
               "--mount-add", "type=volume,src=db-data,dst=/var/lib/db,ro",
               "--mount-add", "type=bind,src=/srv/media,dst=/media") == 0
    assert fake.body() == {"mounts": [
        {"type": "volume", "source": "db-data", "target": "/var/lib/db", "read_only": True},
        {"type": "bind", "source": "/srv/media", "target": "/media", "read_only": False},
    ]}
    assert "rolling out new tasks" in capsys.readouterr().out


def test_update_with_the_mounts_the_service_has_changes_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    fake = FakeManager({("GET", "/v1/services/db"): DB, ("PATCH", "/v1/services/db"): patched})
    assert run(fake, "service", "update", "-d", "db", "--mount-add", "type=tmpfs,dst=/cache") == 0
    assert [r.method for r in fake.requests] == ["GET"]
    assert "unchanged" in capsys.readouterr().out


def test_removing_every_mount_sends_an_empty_list() -> None:
    fake = FakeManager({("GET", "/v1/services/db"): DB, ("PATCH", "/v1/services/db"): patched})
    assert run(fake, "service", "update", "-d", "db", "--mount-rm", "/cache",
               "--mount-rm", "/var/lib/db") == 0
    assert fake.body() == {"mounts": []}


def test_help_and_inspect(capsys: pytest.CaptureFixture[str]) -> None:
    fake = FakeManager({("GET", "/v1/services/db"): DB})
    assert run(fake, "service", "create", "--help") == 0
    assert "--mount SPEC" in capsys.readouterr().out
    assert run(fake, "service", "update", "--help") == 0
    out = capsys.readouterr().out
    assert "--mount-add SPEC" in out and "--mount-rm TARGET" in out
    assert run(fake, "service", "inspect", "db") == 0
    out = capsys.readouterr().out
    assert "mounts" in out and "db-data" in out and "/var/lib/db" in out


DOC = """\
name: db
image: db:1
mounts:
  - type=volume,src=db-data,dst=/var/lib/db
  - {type: bind, source: /srv/media, target: /media, read_only: true}
  - {type: tmpfs, target: /cache, size: 64m}
"""


def test_apply_takes_the_text_and_the_mapping_forms() -> None:
    [document], problems = load([("db.yaml", DOC)])
    assert problems == []
    assert document.wanted["mounts"] == [
        {"type": "volume", "source": "db-data", "target": "/var/lib/db", "read_only": False},
        {"type": "bind", "source": "/srv/media", "target": "/media", "read_only": True},
        {"type": "tmpfs", "target": "/cache", "read_only": False, "size": 64 * MIB},
    ]


@pytest.mark.parametrize(("mounts", "expected"), [
    ("[type=volume]", "mounts.0"),
    ("[42]", "mounts.0: expected type=volume|bind|tmpfs"),
    ("[{type: tmpfs, target: /a, size: lots}]", "mounts.0: invalid size 'lots'"),
    ("[{type: volume, source: a, target: /a, colour: red}]", "mounts.0.colour: unknown field"),
    ("[{type: bind, source: /x/../y, target: /a}]", "must be a normalised absolute path"),
])
def test_apply_names_a_bad_mount(mounts: str, expected: str) -> None:
    documents, problems = load([("db.yaml", f"name: db\nimage: db:1\nmounts: {mounts}\n")])
    assert documents == []
    assert len(problems) == 1 and expected in problems[0], problems
