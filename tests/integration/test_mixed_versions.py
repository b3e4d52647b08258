"""A rolling upgrade under real managers: while one manager runs an older Warren, the leader refuses a
command that manager could not apply (409, naming it, nothing committed) and still takes every other
command; once that manager is upgraded, the command goes through.

The "newer Warren" is this checkout with one command made a command of the next version: a
sitecustomize module, put first on the daemon's PYTHONPATH, raises COMMAND_VERSION by one and lists
`secret.create` in SINCE with it before anything else runs. The "older Warren" is this checkout as it
is."""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.integration import managers as harness
from tests.integration.managers import ManagerCluster, api, assert_error_body
from tests.integration.nodeproc import REPO_ROOT
from warren.store.commands import COMMAND_VERSION
from warren.testing.wait import eventually

pytestmark = pytest.mark.integration

NEXT = COMMAND_VERSION + 1
NEWER = f"""\
import warren.store.commands as commands

commands.COMMAND_VERSION = {NEXT}
commands.SINCE = {{"secret.create": {NEXT}}}
"""


def secret(name: str) -> dict[str, str]:
    return {"name": name, "data": base64.b64encode(b"value").decode()}


def test_the_leader_refuses_what_an_older_manager_cannot_apply(
    make_managers: Callable[..., ManagerCluster], tmp_path: Path
) -> None:
    shim = tmp_path / "newer-warren"
    shim.mkdir()
    (shim / "sitecustomize.py").write_text(NEWER)
    newer = ["env", f"PYTHONPATH={shim}:{REPO_ROOT}"]

    def hosts() -> Iterator[tuple[str, None, list[str]]]:
        yield f"127.0.0.{next(harness._HOSTS)}", None, newer  # m1: upgraded already
        while True:
            yield f"127.0.0.{next(harness._HOSTS)}", None, []  # the others: the older Warren

    cluster = make_managers(hosts=hosts())
    first, second = cluster.form(2)
    assert cluster.leader() is first
    with api(first.api_addr) as client:
        assert client.get("/v1/ready").json()["command_version"] == NEXT
    with api(second.api_addr) as client:
        assert client.get("/v1/ready").json()["command_version"] == COMMAND_VERSION

    with api(first.api_addr) as client:
        refused = client.post("/v1/secrets", json=secret("db-password"))
        body = assert_error_body(refused, 409, "conflict")
        message = body["message"]
        assert f"manager {second.name} runs an older Warren that cannot apply secret.create" in message
        assert "upgrade every manager first" in message
        assert client.get("/v1/secrets").json() == [], "nothing was committed"
        # What every manager applies still goes through.
        assert client.post("/v1/services", json={"name": "web", "image": "busybox"}).status_code == 201

    # Upgrade the older manager in place; then the command is accepted.
    assert second.stop() == 0
    second.prefix = newer
    second.restart()

    def accepted() -> httpx.Response | None:
        with api(first.api_addr) as client:
            response = client.post("/v1/secrets", json=secret("db-password"))
        return response if response.status_code == 201 else None

    eventually(accepted, 30, "secret create accepted once every manager is upgraded")

    def replicated() -> bool:
        with api(second.api_addr) as client:
            return [s["name"] for s in client.get("/v1/secrets").json()] == ["db-password"]

    eventually(replicated, 10, "the secret on the upgraded manager")
