"""The SQLite state machine: command codec, apply (deterministic, refusals change nothing), snapshots."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.unit.store.log import FOUNDER, T0, Log, dump
from warren.errors import CorruptStateError
from warren.pki import tokens
from warren.spec.service import ServiceSpec, TaskSpec, to_doc
from warren.store import commands as c
from warren.store import queries, schema
from warren.store.machine import Store, check_state_file

CA_DIGEST = "0123456789" * 5


# -- codec ------------------------------------------------------------------------------------------


def test_every_command_round_trips() -> None:
    cmds: list[c.Command] = [
        c.InitCluster("cluster-1", T0, FOUNDER),
        c.CreateToken("t1", "worker", "ab" * 32, T0, T0 + 10, True),
        c.RegisterManager("manager-2-x", "127.0.0.2:8080", "127.0.0.2:7946", "cd" * 32, T0),
        c.SetNodeState("manager-2-x", "ready", T0),
        c.RemoveNode("manager-2-x", T0),
        c.CreateService("svc-1", "web", ServiceSpec(image="nginx", replicas=2), T0),
        c.UpdateService("web", {"replicas": 3}, T0, 7),
        c.UpdateService("web", {"replicas": 3}, T0),
        c.RemoveService("web", T0, None),
        c.ImportRows("services", [{"id": "a"}]),
        c.ResetManagers(FOUNDER, T0),
        c.RegisterWorker("worker-1", "ab" * 32, "ef" * 32, "127.0.0.3", {"zone": "a"}, {"cpus": 2.0}, T0),
        c.UpdateNode("worker-1", "127.0.0.4", {}, {"drivers": ["docker"]}, T0),
        c.SetNodeAvailability("worker-1", "drain", T0),
        c.RollbackService("web", T0, 3),
        c.SetUpdateStatus("web", {"state": "updating", "message": "", "started_at": T0}, T0),
        c.SetUpdateStatus("web", None, T0),
        c.CreateTasks(
            [
                c.NewTask("task-1", "svc-1", 1, "worker-1", "assigned", "", TaskSpec(image="a"), "d1"),
                c.NewTask("task-2", "svc-1", None, None, "pending", "", TaskSpec(image="b", secrets=["s"]),
                          "d2"),
            ],
            T0,
        ),
        c.AssignTasks([c.Assignment("task-2", "worker-1", ""), c.Assignment("task-3", None, "why")], T0),
        c.SetTaskStatuses(
            [
                c.TaskStatus("task-1", "running", "up", T0, "worker-1", "c0ffee", None, "healthy"),
                c.TaskStatus("task-2", "failed", "exit 3", T0, exit_code=3),
            ]
        ),
        c.SetTasksDesired(["task-1"], "shutdown", "scaled down", T0),
        c.RemoveTasks(["task-1", "task-2"]),
        c.SetClusterCA("-----BEGIN CERTIFICATE-----", "c2VhbGVk", T0),
        c.RecordCert("ab" * 32, "worker-1", "worker", T0 + 60, T0),
        c.CreateSecret("sec-1", "db-password", "c2VhbGVk", T0),
        c.RemoveSecret("db-password", T0),
        c.CreateConfig("cfg-1", "app-conf", "aGk=", 2, "ab" * 32, T0),
        c.RemoveConfig("app-conf", T0),
        c.NodeVolumes("worker-1", [c.VolumeRecord("data", "docker"), c.VolumeRecord("data", "process")], T0),
        c.RemoveVolume("worker-1", "data", T0),
        c.ClusterNote("leader", "elected", "manager-1", {"term": 3, "leaderless_ms": 1200}, "elected", T0),
    ]
    assert {type(cmd) for cmd in cmds} == set(c.COMMANDS.values())
    for cmd in cmds:
        assert c.decode(c.encode(cmd)) == cmd


FIXTURES = Path(__file__).parents[2] / "fixtures" / "commands-v1"


def test_commands_written_by_the_old_encoder_decode_and_encode_to_the_same_bytes() -> None:
    # Replicated logs, snapshots and managers of mixed versions hold these bytes (written by the
    # hand-written codec of commit 793c90e, tests/fixtures/make_command_fixtures.py).
    payloads = (FIXTURES / "payloads.jsonl").read_bytes().splitlines()
    ops = set()
    for payload in payloads:
        cmd = c.decode(payload)
        ops.add(cmd.OP)
        again = c.encode(cmd)
        assert c.decode(again) == cmd
        if b"partial" in payload:
            continue  # a spec the API never wrote: it gains the defaults the API would have filled in
        if cmd.OP == "service.create":  # the same spec, its fields in ServiceSpec's order
            assert orjson.loads(again) == orjson.loads(payload)
        else:
            assert again == payload
    assert ops == {op for op in c.COMMANDS if op not in c.SINCE}  # every op that codec knew


def test_a_float_field_takes_an_int_and_keeps_a_float() -> None:
    cmd = c.decode(b'{"v": 1, "op": "node.remove", "name": "x", "at": 1}')
    assert cmd == c.RemoveNode("x", 1.0) and isinstance(cmd.at, float)
    assert c.encode(cmd) == b'{"v":1,"op":"node.remove","name":"x","at":1.0}'


@pytest.mark.parametrize(
    ("payload", "fragment"),
    [
        (b"not json", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b'{"op": "node.remove", "name": "x", "at": 1}', "codec version"),
        (b'{"v": 99, "op": "node.remove", "name": "x", "at": 1}', "codec version"),
        (b'{"v": 1, "op": "node.explode"}', "unknown command"),
        (b'{"v": 1, "op": "node.remove", "name": "x"}', "missing field 'at'"),
        (b'{"v": 1, "op": "node.remove", "name": "x", "at": 1, "extra": 2}', "unknown field 'extra'"),
        (b'{"v": 1, "op": "node.remove", "name": 5, "at": 1}', "node.remove.name"),
        (b'{"v": 1, "op": "node.remove", "name": "x", "at": true}', "node.remove.at"),
        (b'{"v": 1, "op": "service.remove", "name": "x", "at": 1, "if_version": true}', "got `bool`"),
        (b'{"v": 1, "op": "service.remove", "name": "x", "at": 1, "if_version": 2.0}', "if_version"),
        (b'{"v": 1, "op": "task.remove", "task_ids": ["a", 2]}', r"task.remove.task_ids\[1\]"),
        (
            b'{"v": 1, "op": "token.create", "token_id": "t", "role": "admin", "hash": "h", "at": 1,'
            b' "expires_at": 2, "rotate": false}',
            "token.create.role",
        ),
        (
            b'{"v": 1, "op": "cluster.init", "cluster_id": "c", "at": 1, "manager": {"name": "m"}}',
            "missing field",
        ),
    ],
)
def test_decode_refuses_malformed_commands(payload: bytes, fragment: str) -> None:
    with pytest.raises(c.CommandError, match=fragment) as info:
        c.decode(payload)
    assert info.value.code == "invalid"


@settings(max_examples=300, deadline=None)
@given(
    st.binary(max_size=200)
    | st.dictionaries(st.text(max_size=8), st.integers(-(2**63), 2**63 - 1) | st.text(max_size=8)).map(
        lambda d: orjson.dumps({"v": 1, "op": "service.update", **d})
    )
)
def test_decode_never_fails_with_anything_but_command_error(payload: bytes) -> None:
    try:
        c.decode(payload)
    except c.CommandError:
        pass


# -- apply ------------------------------------------------------------------------------------------


def test_a_bad_command_answers_an_error_and_the_rest_of_the_batch_applies(log: Log) -> None:
    results = log.apply(
        c.InitCluster("cluster-1", T0, FOUNDER),
        b"garbage",
        c.CreateService("svc-1", "web", ServiceSpec(image="nginx"), T0),
        c.CreateService("svc-2", "web", ServiceSpec(image="other"), T0),  # same name: refused
    )
    assert "ok" in results[0]
    assert results[1]["error"] == "invalid"
    assert results[2]["ok"]["version"] == 3
    assert results[3] == {"error": "conflict", "message": "a service named 'web' already exists"}
    rows = log.store.conn.execute("SELECT id, spec FROM services").fetchall()
    assert [(r["id"], orjson.loads(r["spec"])) for r in rows] == [
        ("svc-1", to_doc(ServiceSpec(image="nginx")))
    ]
    assert log.store.applied_index == 4


def test_conditional_update_checks_the_version(log: Log) -> None:
    log.apply(
        c.InitCluster("cluster-1", T0, FOUNDER),
        c.CreateService("svc-1", "web", ServiceSpec(image="a", replicas=1), T0),
    )
    stale = log.apply(c.UpdateService("web", {"replicas": 5}, T0, if_version=1))
    assert stale[0]["error"] == "conflict"
    fresh = log.apply(c.UpdateService("web", {"replicas": 5}, T0 + 1, if_version=2))
    assert fresh[0]["ok"]["spec"] == to_doc(ServiceSpec(image="a", replicas=5))  # read back defaulted
    assert fresh[0]["ok"]["version"] == 4
    assert log.store.conn.execute("SELECT previous_spec FROM services").fetchone()[0] is None  # a scale
    updated = log.apply(c.UpdateService("web", {"image": "b"}, T0 + 2, if_version=4))
    assert updated[0]["ok"]["version"] == 5
    previous = log.store.conn.execute("SELECT previous_spec FROM services").fetchone()[0]
    assert orjson.loads(previous) == to_doc(ServiceSpec(image="a", replicas=5))
    assert log.apply(c.RemoveService("web", T0, if_version=4))[0]["error"] == "conflict"
    assert log.apply(c.RemoveService("web", T0, if_version=5))[0] == {"ok": {"removed": "web"}}
    assert log.apply(c.RemoveService("web", T0))[0]["error"] == "not_found"


def test_manager_registration_checks_the_token_at_the_proposers_time(log: Log) -> None:
    good, other = tokens.mint(CA_DIGEST), tokens.mint(CA_DIGEST)
    log.apply(
        c.InitCluster("cluster-1", T0, FOUNDER),
        c.CreateToken("t1", "manager", tokens.digest(good), T0, T0 + 100, False),
        c.CreateToken("t2", "worker", tokens.digest(other), T0, T0 + 100, False),
    )

    def register(token: str, at: float, n: int) -> dict[str, Any]:
        cmd = c.RegisterManager(
            f"manager-{n}", f"127.0.0.{n}:8080", f"127.0.0.{n}:7946", tokens.digest(token), at
        )
        return log.apply(cmd)[0]

    unknown = tokens.mint(CA_DIGEST)
    assert register(unknown, T0, 2) == {"error": "unauthorized", "message": "invalid join token"}
    assert "worker join token" in register(other, T0, 2)["message"]
    assert "expired" in register(good, T0 + 100, 2)["message"]
    assert register(good, T0 + 1, 2) == {"ok": {"name": "manager-2", "raft_id": 2, "cluster_id": "cluster-1"}}
    # The same address again while the first is still joining replaces the stale record.
    assert register(good, T0 + 2, 2)["ok"]["raft_id"] == 3
    assert log.apply(c.SetNodeState("manager-2", "ready", T0))[0]["ok"]
    clash = log.apply(
        c.RegisterManager("manager-9", "127.0.0.2:8080", "127.0.0.9:7946", tokens.digest(good), T0)
    )
    assert clash[0]["error"] == "conflict"
    log.apply(c.CreateToken("t3", "manager", tokens.digest(other + "x"), T0 + 3, T0 + 100, True))
    assert "rotated" in register(good, T0 + 4, 4)["message"]


def test_apply_is_deterministic(tmp_path: Path) -> None:
    cmds: list[c.Command] = [
        c.InitCluster("cluster-1", T0, FOUNDER),
        c.CreateToken("t1", "manager", "aa" * 32, T0, T0 + 100, False),
        c.RegisterManager("manager-2-x", "127.0.0.2:8080", "127.0.0.2:7946", "aa" * 32, T0 + 1),
        c.CreateService("svc-1", "web", ServiceSpec(image="nginx"), T0),
        c.UpdateService("web", {"replicas": 4}, T0 + 2),
    ]
    dumps = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        store = Store(str(tmp_path / name))
        Log(store).apply(*cmds)
        dumps.append(dump(store))
    assert dumps[0] == dumps[1]


# -- snapshot and restore ---------------------------------------------------------------------------


def test_snapshot_and_restore_round_trip(log: Log, tmp_path: Path) -> None:
    log.apply(
        c.InitCluster("cluster-1", T0, FOUNDER), c.CreateService("svc-1", "web", ServiceSpec(image="a"), T0)
    )
    before = dump(log.store)
    snap = str(tmp_path / "snap.db")
    log.store.snapshot(snap)
    log.apply(c.RemoveService("web", T0))
    assert dump(log.store) != before
    log.store.restore(snap)
    assert dump(log.store) == before
    assert log.store.applied_index == 2
    assert os.path.exists(snap), "restore must not consume the core's snapshot file"
    log.store.restore(None)
    assert log.store.conn.execute("SELECT count(*) FROM services").fetchone()[0] == 0


def test_restore_refuses_a_damaged_or_foreign_file(log: Log, tmp_path: Path) -> None:
    log.apply(
        c.InitCluster("cluster-1", T0, FOUNDER),
        c.CreateService("svc-1", "web", ServiceSpec(image="registry/marker"), T0),
    )
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(os.urandom(8192))
    with pytest.raises(CorruptStateError, match="not a Warren state file|damaged"):
        check_state_file(str(garbage))
    foreign = tmp_path / "foreign.db"
    sqlite3.connect(foreign).execute("CREATE TABLE t (x)").connection.commit()
    with pytest.raises(CorruptStateError, match="schema version None"):
        check_state_file(str(foreign))
    snap = tmp_path / "snap.db"
    log.store.snapshot(str(snap))
    data = snap.read_bytes()
    assert data.count(b"registry/marker") == 1
    snap.write_bytes(data.replace(b"registry/marker", b"registry/markes"))  # one flipped byte in a row
    with pytest.raises(CorruptStateError):
        log.store.restore(str(snap))


# The tables of schema version 1 (before workers and tasks had their columns), as a v1 backup has them.
V1_DDL = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE cluster (id TEXT PRIMARY KEY, created_at REAL NOT NULL, next_raft_id INTEGER NOT NULL,
    version INTEGER NOT NULL);
CREATE TABLE nodes (name TEXT PRIMARY KEY, role TEXT NOT NULL, state TEXT NOT NULL,
    availability TEXT NOT NULL DEFAULT 'active', raft_id INTEGER UNIQUE, api_addr TEXT, raft_addr TEXT,
    labels TEXT NOT NULL DEFAULT '{}', resources TEXT NOT NULL DEFAULT '{}', created_at REAL NOT NULL,
    updated_at REAL NOT NULL, version INTEGER NOT NULL);
CREATE TABLE services (id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, spec TEXT NOT NULL,
    previous_spec TEXT, created_at REAL NOT NULL, updated_at REAL NOT NULL, version INTEGER NOT NULL);
CREATE TABLE tasks (id TEXT PRIMARY KEY, service_id TEXT NOT NULL, slot INTEGER, node TEXT,
    desired_state TEXT NOT NULL, state TEXT NOT NULL, message TEXT NOT NULL DEFAULT '',
    created_at REAL NOT NULL, updated_at REAL NOT NULL, version INTEGER NOT NULL);
CREATE TABLE join_tokens (id TEXT PRIMARY KEY, role TEXT NOT NULL, hash TEXT NOT NULL UNIQUE,
    created_at REAL NOT NULL, expires_at REAL NOT NULL, revoked INTEGER NOT NULL DEFAULT 0,
    version INTEGER NOT NULL);
"""


def test_a_v1_backup_is_importable_but_not_a_snapshot(log: Log, tmp_path: Path) -> None:
    path = tmp_path / "v1.db"
    conn = sqlite3.connect(path)
    conn.executescript(V1_DDL)
    conn.execute("INSERT INTO meta VALUES ('schema_version', '1')")
    conn.execute("INSERT INTO cluster VALUES ('cluster-old', ?, 2, 1)", (T0,))
    conn.execute(
        "INSERT INTO services VALUES ('svc-1', 'web', '{\"image\": \"a\"}', NULL, ?, ?, 2)", (T0, T0)
    )
    conn.execute("INSERT INTO meta VALUES ('content_digest', ?)", (schema.content_digest(conn),))
    conn.commit()
    conn.close()
    check_state_file(str(path), versions=schema.IMPORTABLE_VERSIONS)
    reads = f"schema version 1, this Warren reads version {schema.SCHEMA_VERSION}"
    with pytest.raises(CorruptStateError, match=reads):
        check_state_file(str(path))
    with pytest.raises(CorruptStateError, match="schema version 1"):
        log.store.restore(str(path))
    # Its rows import by column name; the columns v1 lacked take their defaults.
    log.store.restore(None)
    log.apply(c.InitCluster("cluster-1", T0, FOUNDER))
    src = sqlite3.connect(path)
    src.row_factory = sqlite3.Row
    rows = [dict(r) for r in src.execute("SELECT * FROM services")]
    src.close()
    assert log.apply(c.ImportRows("services", rows))[0] == {"ok": {"table": "services", "rows": 1}}
    row = log.store.conn.execute("SELECT update_status, spec FROM services WHERE id = 'svc-1'").fetchone()
    assert row["update_status"] is None and orjson.loads(row["spec"]) == {"image": "a"}


def test_import_rows_only_into_known_tables_and_columns(log: Log) -> None:
    log.apply(c.InitCluster("cluster-1", T0, FOUNDER))
    assert log.apply(c.ImportRows("meta", [{"key": "x", "value": "y"}]))[0]["error"] == "invalid"
    assert log.apply(c.ImportRows("services", [{"nope": 1}]))[0]["error"] == "invalid"
    row = {
        "id": "svc-9",
        "name": "db",
        "spec": "{}",
        "previous_spec": None,
        "created_at": T0,
        "updated_at": T0,
        "version": 1,
    }
    assert log.apply(c.ImportRows("services", [row]))[0] == {"ok": {"table": "services", "rows": 1}}
    assert log.apply(c.ImportRows("services", [row]))[0]["ok"]["rows"] == 1  # idempotent


# Found by test_store_stateful.py: each of these commands decodes, and SQLite could not take it (a
# syntax error, a binding error, an OverflowError); the store raised, which stops every manager at the
# same log entry, for good. Now each is refused, changes nothing, and the rest of its batch applies.
UNSTORABLE: list[c.Command] = [
    c.ImportRows("cluster", [{}]),
    c.ImportRows("services", [{"id": ["svc-1"]}]),
    c.ImportRows("services", [{"id": {"a": 1}}]),
    c.ImportRows("cluster", [{"version": 2**63}]),
    c.InitCluster("cluster-1", T0, c.ManagerRecord("manager-1", 2**63, "127.0.0.1:8080", "127.0.0.1:7946")),
    c.CreateTasks(
        [c.NewTask("task-1", "svc-1", 2**64 - 1, None, "pending", "", TaskSpec(image="a"), "d")], T0
    ),
    c.SetTaskStatuses([c.TaskStatus("task-1", "failed", "exit", T0, exit_code=2**63)]),
    c.CreateConfig("cfg-1", "app-conf", "aGk=", 2**63, "ab" * 32, T0),
]


@pytest.mark.parametrize("cmd", UNSTORABLE, ids=lambda cmd: cmd.OP)
def test_a_value_sqlite_cannot_store_is_refused_not_a_reason_to_stop(log: Log, cmd: c.Command) -> None:
    before = dump(log.store)
    answers = log.apply(cmd, c.CreateSecret("sec-1", "db-password", "c2VhbGVk", T0))
    assert answers[0]["error"] == "invalid", answers[0]
    assert "ok" in answers[1]
    log.apply(c.RemoveSecret("db-password", T0))
    assert dump(log.store) == before


def test_tokens_are_well_formed_and_redacted() -> None:
    token = tokens.mint(CA_DIGEST)
    assert tokens.well_formed(token) and token.startswith(f"SWMTKN-1-{CA_DIGEST}-") and len(token) == 85
    assert tokens.ca_digest(token) == CA_DIGEST and tokens.ca_digest("SWMTKN-1-" + "a" * 50) is None
    assert not tokens.well_formed(token + "x") and not tokens.well_formed("SWMTKN-1-ABC")
    assert tokens.mint(CA_DIGEST) != token
    assert tokens.digest(token) != tokens.digest(tokens.mint(CA_DIGEST))
    assert token not in tokens.redact(f"bad token {token} given")


# -- the cluster CA and certificate records -------------------------------------------------------


def test_cluster_ca_is_recorded_once(log: Log) -> None:
    assert log.apply(c.SetClusterCA("CA-1", "sealed-1", T0)) == [{"ok": {"ca": "set"}}]
    # The founder proposing it again after a crash is harmless; a different CA is refused.
    assert log.apply(c.SetClusterCA("CA-1", "sealed-1", T0 + 1)) == [{"ok": {"ca": "unchanged"}}]
    assert log.apply(c.SetClusterCA("CA-2", "sealed-2", T0 + 2)) == [
        {"error": "conflict", "message": "the cluster already has a CA"}
    ]
    assert queries.cluster_ca(log.store.conn) == ("CA-1", "sealed-1")


def test_removing_a_node_revokes_its_unexpired_certificates(log: Log) -> None:
    log.apply(
        c.InitCluster("cluster-1", T0, FOUNDER),
        c.CreateToken("t1", "worker", "ab" * 32, T0, T0 + 100, False),
        c.RegisterWorker("worker-1", "ab" * 32, "ef" * 32, "127.0.0.3", {}, {}, T0),
        c.RecordCert("f1", "worker-1", "worker", T0 + 50, T0),
        c.RecordCert("f2", "worker-1", "worker", T0 + 500, T0),
        c.RecordCert("m1", FOUNDER.name, "manager", T0 + 500, T0),
    )
    assert queries.revoked_fingerprints(log.store.conn, T0) == []
    log.apply(c.RemoveNode("worker-1", T0 + 1))
    assert queries.revoked_fingerprints(log.store.conn, T0 + 1) == ["f1", "f2"]
    # An expired certificate needs no revoking, and is dropped when the next one is recorded.
    assert queries.revoked_fingerprints(log.store.conn, T0 + 60) == ["f2"]
    log.apply(c.RecordCert("m2", FOUNDER.name, "manager", T0 + 900, T0 + 60))
    fingerprints = [r[0] for r in log.store.conn.execute("SELECT fingerprint FROM certs ORDER BY 1")]
    assert fingerprints == ["f2", "m1", "m2"]
