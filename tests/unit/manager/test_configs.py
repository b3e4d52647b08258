"""Configs on the manager side: the replicated state (apply and its refusals), the control's bounds, and
delivery by the dispatcher (a worker gets the configs of its own tasks only); the API's side is
api/test_routes_configs.py. Against a real SQLite store fed through an in-memory proposer (no Raft)."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

import pytest

from tests.unit.manager.secrets_world import T0, World
from warren.config import ManagerSettings, OrchestratorSettings
from warren.errors import ConfigError, ConflictError, InvalidError, NotFoundError
from warren.manager import configs as manager_configs
from warren.manager.dispatcher import Dispatcher, secret_digest
from warren.spec.service import ServiceSpec, decode
from warren.store import commands as c
from warren.store import queries, schema

CONTENT = b"listen 8080\nworkers 4\n"


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# -- the replicated state ----------------------------------------------------------------------------


def test_configs_are_replicated_and_restored_from_a_backup() -> None:
    assert "configs" in schema.TABLES and "configs" in schema.IMPORTED_TABLES
    assert "configs" not in schema.SEALED_TABLES  # not sealed: a restored cluster reads them as they are


async def test_a_config_is_stored_as_it_is_with_its_size_and_digest(world: World) -> None:
    answer = await world.configs.create("app-conf", CONTENT)
    assert set(answer) == {"id", "name", "size", "digest", "created_at", "updated_at", "version", "services"}
    assert answer["size"] == len(CONTENT) and answer["digest"] == hashlib.sha256(CONTENT).hexdigest()
    row = world.conn.execute("SELECT data FROM configs WHERE name = 'app-conf'").fetchone()
    assert base64.b64decode(row[0]) == CONTENT
    assert world.configs.get("app-conf")["data"] == b64(CONTENT)
    listed = world.configs.all()
    assert [c["name"] for c in listed] == ["app-conf"] and "data" not in listed[0]


async def test_a_name_is_taken_once_and_contents_are_bounded(world: World) -> None:
    await world.configs.create("app-conf", b"one")
    with pytest.raises(ConflictError, match="already exists .*configs are immutable"):
        await world.configs.create("app-conf", b"two")
    assert world.configs.get("app-conf")["data"] == b64(b"one")
    with pytest.raises(InvalidError, match="empty"):
        await world.configs.create("empty", b"")
    limit = world.configs.max_bytes
    assert limit == ManagerSettings().max_config_bytes == 500 * 1024
    with pytest.raises(InvalidError, match=f"at most {limit}"):
        await world.configs.create("big", b"x" * (limit + 1))
    assert (await world.configs.create("max", b"x" * limit))["size"] == limit


def test_the_size_bound_must_fit_a_request_and_a_raft_entry() -> None:
    ManagerSettings().validate()
    with pytest.raises(ConfigError, match="max_config_bytes"):
        ManagerSettings(max_config_bytes=ManagerSettings().max_request_bytes).validate()
    with pytest.raises(ConfigError, match="max_config_bytes"):
        ManagerSettings(max_config_bytes=0).validate()


async def test_a_service_may_name_only_existing_configs(world: World) -> None:
    await world.configs.create("app-conf", CONTENT)
    with pytest.raises(NotFoundError, match="configs that do not exist: nope"):
        world.service("web", configs=[{"name": "app-conf"}, {"name": "nope", "target": "/etc/nope"}])
    assert queries.service(world.conn, "web") is None
    world.service("web", configs=[{"name": "app-conf", "target": "/etc/app.conf", "mode": 0o440}])
    with pytest.raises(NotFoundError, match="nope"):
        world.propose.apply(c.UpdateService("web", {"configs": [{"name": "nope"}]}, T0))
    spec = queries.service(world.conn, "web")["spec"]  # type: ignore[index]
    assert spec["configs"] == [{"name": "app-conf", "target": "/etc/app.conf", "mode": 0o440}]


async def test_a_config_in_use_cannot_be_removed_and_its_users_are_named(world: World) -> None:
    await world.configs.create("shared", CONTENT)
    world.service("web", configs=[{"name": "shared"}])
    world.service("api", configs=[{"name": "shared", "target": "/etc/shared"}])
    with pytest.raises(ConflictError, match="in use by services api, web: .*--config-rm shared"):
        await world.configs.remove("shared")
    assert world.configs.get("shared")["services"] == ["api", "web"]
    assert world.configs.all()[0]["services"] == ["api", "web"]
    world.propose.apply(c.UpdateService("web", {"configs": []}, T0))
    world.propose.apply(c.RemoveService("api", T0))
    assert await world.configs.remove("shared") == {"removed": "shared"}
    assert world.conn.execute("SELECT count(*) FROM configs").fetchone()[0] == 0
    with pytest.raises(NotFoundError):
        await world.configs.remove("shared")


async def test_a_rollback_to_a_spec_whose_config_was_removed_is_refused(world: World) -> None:
    await world.configs.create("conf-v1", CONTENT)
    world.service("web", configs=[{"name": "conf-v1"}])
    world.propose.apply(c.UpdateService("web", {"configs": []}, T0))
    await world.configs.remove("conf-v1")
    with pytest.raises(ConflictError, match="cannot roll back: its previous spec names configs that do not"):
        world.propose.apply(c.RollbackService("web", T0, requested=True))


# -- delivery ----------------------------------------------------------------------------------------


def test_names_used_counts_tasks_that_should_run_only() -> None:
    docs = [
        {"desired_state": "running", "spec": {"configs": [{"name": "a"}, {"name": "b", "mode": 256}]}},
        {"desired_state": "shutdown", "spec": {"configs": [{"name": "c"}]}},
        {"desired_state": "running", "spec": {"configs": "garbage"}},
        {"desired_state": "running", "spec": {}},
    ]
    assert manager_configs.names_used(docs) == {"a", "b"}


async def test_for_delivery_leaves_out_what_is_missing(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    await world.configs.create("here", CONTENT)
    found = manager_configs.for_delivery(world.conn, ["here", "gone"], node="worker-1")
    assert found == {"here": b64(CONTENT)}
    assert "gone" in caplog.text and "worker-1" in caplog.text


async def test_the_dispatcher_gives_each_worker_the_configs_of_its_own_tasks_only(world: World) -> None:
    token_hash = "ab" * 32
    world.propose.apply(c.CreateToken("tok", "worker", token_hash, T0, T0 + 1e6, False))
    for node in ("worker-a", "worker-b"):
        world.propose.apply(c.RegisterWorker(node, token_hash, secret_digest(node), "127.0.0.9", {}, {}, T0))
    await world.configs.create("web-conf", CONTENT)
    await world.configs.create("api-conf", b"api")
    await world.configs.create("unused", b"nobody's")
    world.service("web", configs=[{"name": "web-conf", "target": "/etc/web.conf"}])
    world.service("api", configs=[{"name": "api-conf"}])
    world.service("plain")

    def task(task_id: str, service: str, node: str, desired: str = "running") -> None:
        spec = decode(ServiceSpec, queries.service(world.conn, service)["spec"])  # type: ignore[index]
        new = c.NewTask(task_id, f"svc-{service}", 1, node, "assigned", "", spec.task_spec(), "d")
        world.propose.apply(c.CreateTasks([new], T0))
        if desired != "running":
            world.propose.apply(c.SetTasksDesired([task_id], "shutdown", "", T0))

    task("t-web", "web", "worker-a")
    task("t-plain", "plain", "worker-a")
    task("t-api", "api", "worker-b")
    task("t-api-old", "api", "worker-a", desired="shutdown")  # being stopped: needs no config

    dispatcher = Dispatcher(world.store, world.propose, OrchestratorSettings(), hold_s=0.01)
    a = await dispatcher.session("worker-a", None, None)
    b = await dispatcher.session("worker-b", None, None)
    assert a["configs"] == {"web-conf": b64(CONTENT)}
    assert b["configs"] == {"api-conf": b64(b"api")}
    # Nothing new to hand out: no assignments, no configs.
    again = await dispatcher.session("worker-a", a["digest"], None)
    assert again["assignments"] is None and again["configs"] is None


def test_check_known_names_every_missing_config(world: World) -> None:
    with pytest.raises(NotFoundError, match="no config named 'a', 'b'"):
        manager_configs.check_known(world.conn, ["a", "b", "a"])
    manager_configs.check_known(world.conn, [])
