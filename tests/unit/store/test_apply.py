"""Apply of the worker, node, service-rollout and task commands: what each changes, what it refuses,
and what it ignores (stale items are counted, never fail a batch)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.unit.store.log import (
    FOUNDER,
    SPEC,
    T0,
    WORKER_TOKEN,
    Log,
    cluster_with_workers,
    dump,
    new_task,
    ok,
    register,
    status,
)
from warren.pki import tokens
from warren.spec.service import ServiceSpec, decode, spec_digest, to_doc
from warren.store import commands as c
from warren.store import schema
from warren.store.machine import Store


def task_row(log: Log, task_id: str) -> dict[str, Any]:
    row = log.store.conn.execute("SELECT * FROM tasks WHERE id = ?", (task_id,)).fetchone()
    assert row is not None, f"no task {task_id}"
    return dict(row)


def node_row(log: Log, name: str) -> dict[str, Any]:
    return dict(log.store.conn.execute("SELECT * FROM nodes WHERE name = ?", (name,)).fetchone())


def full(doc: dict[str, Any]) -> dict[str, Any]:
    """A spec document with every default filled in, as the typed spec reads it."""
    return to_doc(decode(ServiceSpec, doc))


def spec_row(log: Log, name: str = "web") -> tuple[dict[str, Any], dict[str, Any] | None]:
    """A service's spec and previous spec, as the typed spec reads them."""
    row = log.store.conn.execute(
        "SELECT spec, previous_spec FROM services WHERE name = ?", (name,)
    ).fetchone()
    previous = None if row["previous_spec"] is None else full(orjson.loads(row["previous_spec"]))
    return full(orjson.loads(row["spec"])), previous


# -- workers and nodes ------------------------------------------------------------------------------


def test_a_worker_registers_with_a_worker_token(log: Log) -> None:
    cluster_with_workers(log)
    answer = log.apply(register("worker-a"))[0]
    assert answer == {"ok": {"name": "worker-a", "cluster_id": "cluster-1"}}
    row = node_row(log, "worker-a")
    assert row["role"] == "worker" and row["state"] == "ready" and row["availability"] == "active"
    assert row["api_addr"] == "127.0.0.5" and row["raft_id"] is None
    assert orjson.loads(row["labels"]) == {"zone": "a"} and orjson.loads(row["resources"]) == {"cpus": 2.0}
    assert row["secret_hash"] == "secret-of-worker-a"
    assert row["version"] == log.index and row["created_at"] == T0 + 1


def test_worker_registration_refuses_bad_tokens_and_name_clashes(log: Log) -> None:
    cluster_with_workers(log, "worker-a")
    manager_token = "SWMTKN-1-" + "m" * 50
    log.apply(c.CreateToken("tm", "manager", tokens.digest(manager_token), T0, T0 + 1000, False))

    def refusal(cmd: c.RegisterWorker) -> tuple[str, str]:
        answer = log.apply(cmd)[0]
        assert "error" in answer, answer
        return answer["error"], answer["message"]

    assert refusal(register("worker-b", token="SWMTKN-1-" + "x" * 50)) == (
        "unauthorized",
        "invalid join token",
    )
    code, message = refusal(register("worker-b", token=manager_token))
    assert code == "unauthorized" and "manager join token" in message
    code, message = refusal(register("worker-b", at=T0 + 1000))
    assert code == "unauthorized" and "expired" in message
    assert refusal(register("worker-a"))[0] == "conflict"
    assert refusal(register(FOUNDER.name))[0] == "conflict"
    assert node_row(log, "worker-a")["secret_hash"] == "secret-of-worker-a"  # the clash changed nothing
    log.apply(c.CreateToken("tw2", "worker", tokens.digest("SWMTKN-1-" + "n" * 50), T0 + 2, T0 + 1000, True))
    code, message = refusal(register("worker-b", at=T0 + 3))
    assert code == "unauthorized" and "rotated" in message
    assert (
        ok(log.apply(register("worker-b", token="SWMTKN-1-" + "n" * 50, at=T0 + 3))[0])["name"] == "worker-b"
    )


def test_a_nodes_operator_labels_are_bounded_altogether(log: Log) -> None:
    from warren.config import MAX_NODE_LABELS

    cluster_with_workers(log, "worker-a")
    half = MAX_NODE_LABELS // 2
    ok(log.apply(c.SetNodeLabels("worker-a", {f"a{i}": "x" for i in range(half)}, [], T0))[0])
    ok(log.apply(c.SetNodeLabels("worker-a", {f"b{i}": "x" for i in range(half)}, [], T0))[0])
    # Each request within the bound, but the node past it: refused, the labels as they were.
    refused = log.apply(c.SetNodeLabels("worker-a", {"one-more": "x"}, [], T0))[0]
    assert refused["error"] == "invalid" and str(MAX_NODE_LABELS) in refused["message"]
    assert len(orjson.loads(node_row(log, "worker-a")["operator_labels"])) == MAX_NODE_LABELS
    # Swapping one for another at the bound is fine.
    ok(log.apply(c.SetNodeLabels("worker-a", {"one-more": "x"}, ["a0"], T0))[0])


def test_node_update_rewrites_a_workers_address_labels_and_resources(log: Log) -> None:
    cluster_with_workers(log, "worker-a")
    doc = ok(log.apply(c.UpdateNode("worker-a", "127.0.0.9", {"zone": "b"}, {"cpus": 4.0}, T0 + 5))[0])
    assert doc["addr"] == "127.0.0.9" and doc["labels"] == {"zone": "b"} and doc["resources"] == {"cpus": 4.0}
    assert doc["version"] == log.index and doc["updated_at"] == T0 + 5
    assert "secret_hash" not in doc
    assert log.apply(c.UpdateNode("worker-z", "x", {}, {}, T0))[0]["error"] == "not_found"
    assert log.apply(c.UpdateNode(FOUNDER.name, "x", {}, {}, T0))[0]["error"] == "not_found"
    assert node_row(log, FOUNDER.name)["api_addr"] == FOUNDER.api_addr


def test_node_availability_and_state(log: Log) -> None:
    cluster_with_workers(log, "worker-a")
    assert ok(log.apply(c.SetNodeAvailability("worker-a", "drain", T0))[0])["availability"] == "drain"
    assert ok(log.apply(c.SetNodeAvailability(FOUNDER.name, "drain", T0))[0])["availability"] == "drain"
    assert ok(log.apply(c.SetNodeAvailability("worker-a", "active", T0))[0])["availability"] == "active"
    assert log.apply(c.SetNodeAvailability("worker-z", "drain", T0))[0]["error"] == "not_found"
    assert ok(log.apply(c.SetNodeState("worker-a", "down", T0))[0]) == {"name": "worker-a", "state": "down"}
    assert log.apply(c.SetNodeState("worker-a", "exploded", T0))[0]["error"] == "invalid"
    assert log.apply(c.SetNodeState("worker-z", "down", T0))[0]["error"] == "not_found"
    assert node_row(log, "worker-a")["state"] == "down"


def test_removing_a_worker_fails_its_unfinished_tasks(log: Log) -> None:
    cluster_with_workers(log, "worker-a", "worker-b")
    log.apply(c.CreateTasks([new_task("t1", "worker-a", 1), new_task("t2", "worker-a", 2)], T0))
    log.apply(c.CreateTasks([new_task("t3", "worker-b", 3), new_task("t0", "worker-a", 4)], T0))
    log.apply(status("t0", "complete", T0 + 1, exit_code=0))
    answer = ok(log.apply(c.RemoveNode("worker-a", T0 + 2))[0])
    assert answer == {"removed": "worker-a", "tasks_failed": 2}
    for task_id in ("t1", "t2"):
        row = task_row(log, task_id)
        assert (row["state"], row["desired_state"], row["message"]) == (
            "failed",
            "shutdown",
            "node worker-a was removed",
        )
        assert row["version"] == log.index and row["updated_at"] == T0 + 2
    assert task_row(log, "t0")["state"] == "complete"  # a finished task keeps its outcome
    assert task_row(log, "t3")["state"] == "assigned"
    assert log.apply(c.RemoveNode("worker-a", T0))[0]["error"] == "not_found"


# -- services: update, rollback, status, removal ----------------------------------------------------


def test_a_scale_keeps_the_previous_spec_and_a_real_update_replaces_it(log: Log) -> None:
    cluster_with_workers(log)
    log.apply(c.UpdateService("web", {"replicas": 5}, T0))
    assert spec_row(log) == (full({**SPEC, "replicas": 5}), None)
    log.apply(c.UpdateService("web", {"image": "v2"}, T0))
    assert spec_row(log)[1] == full({**SPEC, "replicas": 5})
    log.apply(c.UpdateService("web", {"replicas": 1, "labels": {}, "image": "v2"}, T0))  # same image
    assert spec_row(log) == (
        full({**SPEC, "replicas": 1, "labels": {}, "image": "v2"}), full({**SPEC, "replicas": 5})
    )


def test_rollback_swaps_the_task_fields_and_keeps_the_scale(log: Log) -> None:
    cluster_with_workers(log)
    refused = log.apply(c.RollbackService("web", T0))[0]
    assert refused["error"] == "conflict" and "no previous spec" in refused["message"]
    log.apply(
        c.UpdateService(
            "web",
            {"image": "v2", "health": {"kind": "tcp", "port": 80}, "update": {"parallelism": 3},
             "command": None},
            T0,
        )
    )
    log.apply(c.UpdateService("web", {"replicas": 7, "labels": {"tier": "front"}}, T0))
    updated = spec_row(log)[0]
    version = ok(log.apply(c.RollbackService("web", T0 + 1))[0])["version"]
    spec, previous = spec_row(log)
    assert spec == full({**SPEC, "replicas": 7, "labels": {"tier": "front"}})  # no `health` before
    assert previous == updated
    assert version == log.index
    # A second rollback undoes the first.
    assert log.apply(c.RollbackService("web", T0 + 2, if_version=version - 1))[0]["error"] == "conflict"
    ok(log.apply(c.RollbackService("web", T0 + 2, if_version=version))[0])
    assert spec_row(log)[0] == updated
    assert log.apply(c.RollbackService("nope", T0))[0]["error"] == "not_found"


def test_a_requested_rollback_records_rollback_started_in_the_same_apply(log: Log) -> None:
    cluster_with_workers(log)
    log.apply(c.UpdateService("web", {"image": "v2"}, T0))
    log.apply(c.SetUpdateStatus("web", {"state": "paused", "message": "update paused"}, T0))
    quiet = ok(log.apply(c.RollbackService("web", T0 + 1))[0])  # the reconciler's: status untouched
    assert quiet["update_status"]["state"] == "paused"
    service = ok(log.apply(c.RollbackService("web", T0 + 2, requested=True))[0])
    assert service["update_status"] == {
        "state": "rollback_started",
        "message": "rollback requested",
        "started_at": T0 + 2,
        "spec_digest": spec_digest(decode(ServiceSpec, service["spec"])),
    }


def test_update_status_is_stored_without_bumping_the_version(log: Log) -> None:
    cluster_with_workers(log)
    before = log.store.conn.execute("SELECT version FROM services").fetchone()[0]
    progress = {"state": "updating", "message": "1/2", "started_at": T0}
    assert ok(log.apply(c.SetUpdateStatus("web", progress, T0))[0]) == {
        "name": "web",
        "update_status": progress,
    }
    row = log.store.conn.execute("SELECT update_status, version FROM services").fetchone()
    assert orjson.loads(row["update_status"]) == progress and row["version"] == before
    ok(log.apply(c.SetUpdateStatus("web", None, T0))[0])
    assert log.store.conn.execute("SELECT update_status FROM services").fetchone()[0] is None
    assert log.apply(c.SetUpdateStatus("nope", None, T0))[0]["error"] == "not_found"


def test_removing_a_service_deletes_its_tasks(log: Log) -> None:
    cluster_with_workers(log, "worker-a")
    log.apply(c.CreateService("svc-2", "db", decode(ServiceSpec, SPEC), T0))
    log.apply(c.CreateTasks([new_task("t1", "worker-a"), new_task("t2", "worker-a", service_id="svc-2")], T0))
    ok(log.apply(c.RemoveService("web", T0))[0])
    assert [r[0] for r in log.store.conn.execute("SELECT id FROM tasks")] == ["t2"]


# -- tasks ------------------------------------------------------------------------------------------


def test_tasks_are_created_assigned_or_pending(log: Log) -> None:
    cluster_with_workers(log, "worker-a")
    answer = ok(log.apply(c.CreateTasks([new_task("t1", "worker-a"), new_task("t2", None, 2)], T0 + 3))[0])
    assert answer == {"created": 2, "skipped": 0}
    t1, t2 = task_row(log, "t1"), task_row(log, "t2")
    assert (t1["state"], t1["node"], t1["desired_state"]) == ("assigned", "worker-a", "running")
    assert (t2["state"], t2["node"], t2["desired_state"]) == ("pending", None, "running")
    spec = decode(ServiceSpec, SPEC)
    assert orjson.loads(t1["spec"]) == to_doc(spec.task_spec())
    assert t1["spec_digest"] == spec_digest(spec) and t1["health"] == "none"
    assert t1["version"] == log.index and t1["created_at"] == t1["updated_at"] == T0 + 3


@pytest.mark.parametrize(
    "make_unavailable",
    [
        c.SetNodeAvailability("worker-a", "drain", T0),
        c.SetNodeState("worker-a", "down", T0),
        c.RemoveNode("worker-a", T0),
    ],
    ids=["drained", "down", "removed"],
)
def test_a_task_placed_on_an_unavailable_node_becomes_pending(log: Log, make_unavailable: c.Command) -> None:
    cluster_with_workers(log, "worker-a")
    ok(log.apply(make_unavailable)[0])
    ok(log.apply(c.CreateTasks([new_task("t1", "worker-a")], T0))[0])
    row = task_row(log, "t1")
    assert (row["state"], row["node"], row["message"]) == (
        "pending",
        None,
        "node worker-a is no longer available",
    )


def test_task_creation_skips_a_removed_service_and_a_known_id(log: Log) -> None:
    cluster_with_workers(log, "worker-a")
    log.apply(c.CreateTasks([new_task("t1", "worker-a")], T0))
    answer = ok(
        log.apply(
            c.CreateTasks(
                [
                    new_task("t1", None),
                    new_task("t9", "worker-a", service_id="gone"),
                    new_task("t2", "worker-a"),
                ],
                T0,
            )
        )[0]
    )
    assert answer == {"created": 1, "skipped": 2}
    assert task_row(log, "t1")["state"] == "assigned"
    assert [r[0] for r in log.store.conn.execute("SELECT id FROM tasks ORDER BY id")] == ["t1", "t2"]


def test_assign_moves_only_pending_tasks(log: Log) -> None:
    cluster_with_workers(log, "worker-a", "worker-b")
    log.apply(c.CreateTasks([new_task("p1", None, 1), new_task("p2", None, 2), new_task("p3", None, 3)], T0))
    log.apply(c.CreateTasks([new_task("a1", "worker-a", 4)], T0))
    log.apply(c.SetNodeAvailability("worker-b", "drain", T0))
    answer = ok(
        log.apply(
            c.AssignTasks(
                [
                    c.Assignment("p1", "worker-a", "placed"),
                    c.Assignment("p2", None, "no node has 64 CPUs"),
                    c.Assignment("p3", "worker-b", "placed"),
                    c.Assignment("a1", "worker-b", "moved?"),
                    c.Assignment("nope", "worker-a", ""),
                ],
                T0 + 1,
            )
        )[0]
    )
    assert answer == {"assigned": 1, "pending": 2, "ignored": 2}
    rows = {t: task_row(log, t) for t in ("p1", "p2", "p3", "a1")}
    assert (rows["p1"]["state"], rows["p1"]["node"], rows["p1"]["message"]) == (
        "assigned",
        "worker-a",
        "placed",
    )
    assert (rows["p2"]["state"], rows["p2"]["message"]) == ("pending", "no node has 64 CPUs")
    assert (rows["p3"]["state"], rows["p3"]["node"]) == ("pending", None)
    assert rows["p3"]["message"] == "node worker-b is no longer available"
    assert (rows["a1"]["node"], rows["a1"]["version"]) == ("worker-a", log.index - 2)


def test_status_moves_forward_only(log: Log) -> None:
    cluster_with_workers(log, "worker-a")
    log.apply(c.CreateTasks([new_task("t1", "worker-a")], T0))
    assert ok(log.apply(status("t1", "starting", T0 + 1, container_id="c1"))[0]) == {
        "applied": 1,
        "ignored": 0,
    }
    ok(log.apply(status("t1", "running", T0 + 2, health="starting"))[0])
    row = task_row(log, "t1")
    assert (row["state"], row["container_id"], row["health"], row["started_at"]) == (
        "running",
        "c1",
        "starting",
        T0 + 2,
    )
    # A repeated report is harmless: same state, started_at kept.
    assert ok(log.apply(status("t1", "running", T0 + 3, health="healthy"))[0]) == {"applied": 1, "ignored": 0}
    row = task_row(log, "t1")
    assert (row["state"], row["health"], row["started_at"], row["updated_at"]) == (
        "running",
        "healthy",
        T0 + 2,
        T0 + 3,
    )
    # Backwards is ignored.
    assert ok(log.apply(status("t1", "starting", T0 + 4))[0]) == {"applied": 0, "ignored": 1}
    ok(log.apply(status("t1", "failed", T0 + 5, exit_code=137, message="killed"))[0])
    final = task_row(log, "t1")
    assert (final["state"], final["exit_code"], final["message"], final["container_id"]) == (
        "failed",
        137,
        "killed",
        "c1",
    )
    # A late 'running' (or anything) after a final state changes nothing, not even the version.
    assert ok(log.apply(status("t1", "running", T0 + 6))[0]) == {"applied": 0, "ignored": 1}
    assert ok(log.apply(status("t1", "failed", T0 + 6, message="again"))[0]) == {"applied": 0, "ignored": 1}
    assert task_row(log, "t1") == final


def test_status_from_another_node_or_for_unknown_tasks_is_ignored_and_the_batch_applies(log: Log) -> None:
    cluster_with_workers(log, "worker-a", "worker-b")
    log.apply(c.CreateTasks([new_task("t1", "worker-a", 1), new_task("t2", "worker-b", 2)], T0))
    cmd = c.SetTaskStatuses(
        [
            c.TaskStatus("t1", "running", "", T0 + 1, node="worker-b"),  # not its node
            c.TaskStatus("nope", "running", "", T0 + 1, node="worker-b"),
            c.TaskStatus("t2", "bogus", "", T0 + 1),
            c.TaskStatus("t2", "running", "", T0 + 1, health="so-so"),
            c.TaskStatus("t2", "running", "up", T0 + 1, node="worker-b"),
            c.TaskStatus("t1", "rejected", "no such driver", T0 + 1),  # the reconciler: no node given
        ]
    )
    assert ok(log.apply(cmd)[0]) == {"applied": 2, "ignored": 4}
    assert task_row(log, "t2")["state"] == "running"
    assert task_row(log, "t1")["state"] == "rejected"


def test_a_batch_naming_a_task_twice_applies_as_if_one_update_at_a_time(log: Log) -> None:
    # The batch is read with one SELECT and written with one executemany: each update must still see
    # what the ones before it in the same batch did.
    cluster_with_workers(log, "worker-a")
    log.apply(c.CreateTasks([new_task("t1", "worker-a", 1), new_task("t2", "worker-a", 2)], T0))
    cmd = c.SetTaskStatuses(
        [
            c.TaskStatus("t1", "starting", "", T0 + 1, container_id="c1"),
            c.TaskStatus("t1", "running", "up", T0 + 2),  # after starting: applies, starts now
            c.TaskStatus("t1", "starting", "", T0 + 3),  # backwards from the update before: ignored
            c.TaskStatus("t2", "complete", "done", T0 + 1, exit_code=0),
            c.TaskStatus("t2", "running", "", T0 + 2),  # after a final state in the same batch: ignored
            c.TaskStatus("t1", "running", "still", T0 + 4, health="healthy"),  # running again: kept start
        ]
    )
    assert ok(log.apply(cmd)[0]) == {"applied": 4, "ignored": 2}
    t1, t2 = task_row(log, "t1"), task_row(log, "t2")
    assert (t1["state"], t1["message"], t1["container_id"], t1["health"], t1["started_at"]) == (
        "running", "still", "c1", "healthy", T0 + 2,
    )  # fmt: skip
    assert (t2["state"], t2["exit_code"], t2["message"]) == ("complete", 0, "done")


def test_a_status_batch_larger_than_one_read_applies_whole(log: Log) -> None:
    cluster_with_workers(log, "worker-a")
    count = 2100  # past the 900 task IDs read per SELECT, twice
    log.apply(c.CreateTasks([new_task(f"t{i}", "worker-a", i) for i in range(count)], T0))
    updates = [c.TaskStatus(f"t{i}", "running", "", T0 + 1) for i in range(count)]
    updates.append(c.TaskStatus("missing", "running", "", T0 + 1))
    assert ok(log.apply(c.SetTaskStatuses(updates))[0]) == {"applied": count, "ignored": 1}
    states = {r["state"] for r in log.store.conn.execute("SELECT state FROM tasks")}
    assert states == {"running"}


def test_desired_state_changes_only_unfinished_tasks(log: Log) -> None:
    cluster_with_workers(log, "worker-a")
    log.apply(c.CreateTasks([new_task("t1", "worker-a", 1), new_task("t2", "worker-a", 2)], T0))
    log.apply(status("t2", "complete", T0 + 1, message="done"))
    answer = ok(log.apply(c.SetTasksDesired(["t1", "t2", "nope"], "shutdown", "scaled down", T0 + 2))[0])
    assert answer == {"changed": 1, "ignored": 2}
    t1 = task_row(log, "t1")
    assert (t1["desired_state"], t1["message"], t1["version"]) == ("shutdown", "scaled down", log.index)
    assert (task_row(log, "t2")["desired_state"], task_row(log, "t2")["message"]) == ("running", "done")
    ok(log.apply(c.SetTasksDesired(["t1"], "running", "", T0 + 3))[0])
    assert (task_row(log, "t1")["desired_state"], task_row(log, "t1")["message"]) == (
        "running",
        "scaled down",
    )


def test_only_finished_tasks_are_removed(log: Log) -> None:
    cluster_with_workers(log, "worker-a")
    log.apply(c.CreateTasks([new_task("t1", "worker-a", 1), new_task("t2", "worker-a", 2)], T0))
    log.apply(status("t2", "shutdown", T0 + 1))
    assert ok(log.apply(c.RemoveTasks(["t1", "t2", "nope"]))[0]) == {"removed": 1, "kept": 2}
    assert [r[0] for r in log.store.conn.execute("SELECT id FROM tasks")] == ["t1"]


def test_the_same_commands_make_the_same_state(tmp_path: Path) -> None:
    cmds: list[c.Command] = [
        c.InitCluster("cluster-1", T0, FOUNDER),
        c.CreateToken("tw", "worker", tokens.digest(WORKER_TOKEN), T0, T0 + 1000, False),
        register("worker-a"),
        register("worker-b", addr="127.0.0.6"),
        c.CreateService("svc-1", "web", decode(ServiceSpec, SPEC), T0),
        c.CreateTasks(
            [new_task("t1", "worker-a", 1), new_task("t2", "worker-b", 2), new_task("t3", None, 3)], T0
        ),
        c.SetNodeAvailability("worker-b", "drain", T0 + 1),
        c.AssignTasks([c.Assignment("t3", "worker-b", "placed")], T0 + 1),
        c.SetTaskStatuses([c.TaskStatus("t1", "running", "up", T0 + 2, "worker-a", "c1", None, "healthy")]),
        c.UpdateService("web", {"image": "v2"}, T0 + 3),
        c.SetUpdateStatus("web", {"state": "updating"}, T0 + 3),
        c.SetTasksDesired(["t1"], "shutdown", "updating", T0 + 4),
        c.SetTaskStatuses([c.TaskStatus("t1", "shutdown", "stopped", T0 + 5, exit_code=0)]),
        c.RemoveTasks(["t1"]),
        c.RollbackService("web", T0 + 6),
        c.RemoveNode("worker-b", T0 + 7),
    ]
    dumps, digests = [], []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        store = Store(str(tmp_path / name))
        answers = Log(store).apply(*cmds)
        assert all("ok" in a for a in answers), answers
        dumps.append(dump(store))
        digests.append(schema.content_digest(store.conn))
        store.close()
    assert dumps[0] == dumps[1]
    assert digests[0] == digests[1]
