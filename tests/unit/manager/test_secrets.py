"""Secrets on the manager side: the replicated state (apply and its refusals), sealing, and delivery by
the dispatcher (a worker gets the secrets of its own tasks only); the API's side is
api/test_routes_secrets.py. Against a real SQLite store fed through an in-memory proposer (no Raft)."""

from __future__ import annotations

import base64
import sqlite3
from pathlib import Path

import pytest

from tests.unit.manager.secrets_world import KEY, T0, VALUE, VALUE_B64, World
from warren.config import OrchestratorSettings
from warren.errors import ConflictError, InvalidError, NotFoundError, WarrenError
from warren.manager import secrets as manager_secrets
from warren.manager.dispatcher import Dispatcher, secret_digest
from warren.manager.secrets import aad, names_used, open_for_delivery
from warren.pki import sealing
from warren.spec.service import ServiceSpec, decode, spec_digest
from warren.store import commands as c
from warren.store import queries, schema


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path)


def sealed_row(conn: sqlite3.Connection, name: str) -> tuple[str, str]:
    row = conn.execute("SELECT id, data_sealed FROM secrets WHERE name = ?", (name,)).fetchone()
    assert row is not None
    return str(row[0]), str(row[1])


# -- the replicated state ----------------------------------------------------------------------------


def test_secrets_are_replicated_but_never_imported_from_a_backup() -> None:
    assert "secrets" in schema.TABLES
    assert "secrets" not in schema.IMPORTED_TABLES


async def test_a_created_secret_is_stored_sealed_and_opens_with_the_data_key_only(world: World) -> None:
    answer = await world.secrets.create("db-password", VALUE)
    assert set(answer) == {"id", "name", "created_at", "updated_at", "version", "services"}
    assert answer["name"] == "db-password" and answer["services"] == []
    secret_id, blob = sealed_row(world.conn, "db-password")
    assert secret_id == answer["id"]
    # Neither the Raft payload nor the row holds the value, plain or in base64.
    for text in (blob.encode(), *world.propose.payloads):
        assert VALUE not in text and VALUE_B64.encode() not in text
    assert sealing.unseal(KEY, base64.b64decode(blob), aad(secret_id)) == VALUE
    with pytest.raises(WarrenError):  # another key, or the blob moved to another secret's row
        sealing.unseal(bytes(32), base64.b64decode(blob), aad(secret_id))
    with pytest.raises(WarrenError):
        sealing.unseal(KEY, base64.b64decode(blob), aad("sec-other"))


async def test_secret_names_are_unique_and_values_bounded(world: World) -> None:
    await world.secrets.create("api-key", b"one")
    with pytest.raises(ConflictError, match="already exists"):
        await world.secrets.create("api-key", b"two")
    with pytest.raises(InvalidError, match="empty"):
        await world.secrets.create("empty", b"")
    limit = world.secrets.max_bytes
    with pytest.raises(InvalidError, match=f"at most {limit}"):
        await world.secrets.create("big", b"x" * (limit + 1))
    assert (await world.secrets.create("max", b"x" * limit))["name"] == "max"


async def test_a_service_may_name_only_existing_secrets(world: World) -> None:
    await world.secrets.create("db-password", VALUE)
    with pytest.raises(NotFoundError, match="secrets that do not exist: nope"):
        world.service("web", "db-password", "nope")
    assert queries.service(world.conn, "web") is None
    world.service("web", "db-password")
    with pytest.raises(NotFoundError, match="nope"):
        world.propose.apply(c.UpdateService("web", {"secrets": ["nope"]}, T0))
    assert queries.service(world.conn, "web")["spec"]["secrets"] == ["db-password"]  # type: ignore[index]
    with pytest.raises(InvalidError, match="spec.secrets: Expected `array`"):
        world.propose.apply(c.UpdateService("web", {"secrets": "db-password"}, T0))


async def test_a_secret_in_use_cannot_be_removed_and_its_users_are_named(world: World) -> None:
    await world.secrets.create("shared", VALUE)
    world.service("web", "shared")
    world.service("api", "shared")
    with pytest.raises(ConflictError, match="in use by services api, web"):
        await world.secrets.remove("shared")
    assert world.secrets.get("shared")["services"] == ["api", "web"]
    world.propose.apply(c.UpdateService("web", {"secrets": []}, T0))
    world.propose.apply(c.RemoveService("api", T0))
    assert await world.secrets.remove("shared") == {"removed": "shared"}
    assert world.conn.execute("SELECT count(*) FROM secrets").fetchone()[0] == 0
    with pytest.raises(NotFoundError):
        await world.secrets.remove("shared")


async def test_a_rollback_to_a_spec_whose_secret_was_removed_is_refused(world: World) -> None:
    await world.secrets.create("old", VALUE)
    world.service("web", "old")
    world.propose.apply(c.UpdateService("web", {"secrets": []}, T0))
    await world.secrets.remove("old")
    with pytest.raises(ConflictError, match="cannot roll back: its previous spec names secrets that do not"):
        world.propose.apply(c.RollbackService("web", T0, requested=True))
    assert queries.service(world.conn, "web")["spec"]["secrets"] == []  # type: ignore[index]


def test_secrets_change_the_task_digest_but_an_empty_list_does_not() -> None:
    old = ServiceSpec(image="busybox", replicas=2)
    assert spec_digest(old) == spec_digest(ServiceSpec(image="busybox", replicas=2, secrets=[]))
    assert spec_digest(old) != spec_digest(ServiceSpec(image="busybox", replicas=2, secrets=["a"]))
    assert ServiceSpec(image="busybox", secrets=["a"]).task_spec().secrets == ["a"]


async def test_the_content_digest_covers_the_sealed_values(world: World, tmp_path: Path) -> None:
    await world.secrets.create("db-password", VALUE)
    before = schema.content_digest(world.conn)
    world.conn.execute("UPDATE secrets SET data_sealed = 'AAAA'")
    assert schema.content_digest(world.conn) != before


# -- delivery ----------------------------------------------------------------------------------------


def test_names_used_counts_tasks_that_should_run_only() -> None:
    docs = [
        {"desired_state": "running", "spec": {"secrets": ["a", "b"]}},
        {"desired_state": "shutdown", "spec": {"secrets": ["c"]}},
        {"desired_state": "running", "spec": {}},
    ]
    assert names_used(docs) == {"a", "b"}


async def test_open_for_delivery_leaves_out_what_is_missing_or_does_not_open(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    await world.secrets.create("good", VALUE)
    await world.secrets.create("damaged", b"other")
    damaged = base64.b64encode(b"x" * 40).decode()
    world.conn.execute("UPDATE secrets SET data_sealed = ? WHERE name = 'damaged'", (damaged,))
    values = open_for_delivery(world.conn, KEY, ["good", "damaged", "gone"], node="worker-1")
    assert values == {"good": VALUE_B64}
    assert "damaged" in caplog.text and "gone" in caplog.text
    assert VALUE_B64 not in caplog.text and VALUE.decode() not in caplog.text
    assert open_for_delivery(world.conn, bytes(32), ["good"], node="worker-1") == {}


async def test_the_dispatcher_gives_each_worker_the_secrets_of_its_own_tasks_only(world: World) -> None:
    token_hash = "ab" * 32
    world.propose.apply(c.CreateToken("tok", "worker", token_hash, T0, T0 + 1e6, False))
    for node in ("worker-a", "worker-b"):
        world.propose.apply(c.RegisterWorker(node, token_hash, secret_digest(node), "127.0.0.9", {}, {}, T0))
    await world.secrets.create("web-key", VALUE)
    await world.secrets.create("api-key", b"api value")
    await world.secrets.create("unused", b"nobody's")
    world.service("web", "web-key")
    world.service("api", "api-key")
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
    task("t-api-old", "api", "worker-a", desired="shutdown")  # being stopped: needs no secret

    dispatcher = Dispatcher(world.store, world.propose, OrchestratorSettings(), hold_s=0.01, data_key=KEY)
    a = await dispatcher.session("worker-a", None, None)
    b = await dispatcher.session("worker-b", None, None)
    assert a["secrets"] == {"web-key": VALUE_B64}
    assert b["secrets"] == {"api-key": base64.b64encode(b"api value").decode()}
    # Nothing new to hand out: no assignments, no secrets.
    again = await dispatcher.session("worker-a", a["digest"], None)
    assert again["assignments"] is None and again["secrets"] is None
    # A dispatcher without the data key delivers nothing (the worker fails those tasks, saying why).
    keyless = Dispatcher(world.store, world.propose, OrchestratorSettings(), hold_s=0.01)
    assert (await keyless.session("worker-a", None, None))["secrets"] == {}


def test_check_known_names_every_missing_secret(world: World) -> None:
    with pytest.raises(NotFoundError, match="'a', 'b'"):
        manager_secrets.check_known(world.conn, ["a", "b", "a"])
    manager_secrets.check_known(world.conn, [])
