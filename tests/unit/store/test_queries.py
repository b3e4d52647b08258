"""Reads of the replicated state: node, service and task documents, a worker's assignments and their
digest; a worker's secret digest never leaves through them."""

from __future__ import annotations

from typing import Any

import orjson

from tests.unit.store.log import (
    FOUNDER,
    SPEC,
    T0,
    WORKER_TOKEN,
    Log,
    cluster_with_workers,
    new_task,
    ok,
    register,
    status,
)
from warren.spec.service import ServiceSpec, decode, spec_digest, to_doc
from warren.store import commands as c
from warren.store import queries


def conn(log: Log) -> Any:
    return log.store.conn


def test_node_documents_never_carry_the_secret_digest(log: Log) -> None:
    cluster_with_workers(log, "worker-a")
    one = queries.node(conn(log), "worker-a")
    assert one is not None
    for doc in [*queries.nodes(conn(log)), *queries.nodes(conn(log), "worker"), one]:
        assert "secret_hash" not in doc
        assert "secret-of-worker-a" not in orjson.dumps(doc).decode()
    assert queries.node_secret_hash(conn(log), "worker-a") == "secret-of-worker-a"
    assert queries.node_secret_hash(conn(log), FOUNDER.name) is None
    assert queries.node_secret_hash(conn(log), "nope") is None


def test_node_documents(log: Log) -> None:
    cluster_with_workers(log, "worker-a")
    manager, worker = queries.nodes(conn(log))
    assert manager["name"] == FOUNDER.name and manager["raft_id"] == 1 and "addr" not in manager
    assert manager["labels"] == {} and manager["resources"] == {}
    assert worker == {
        "name": "worker-a",
        "role": "worker",
        "state": "ready",
        "availability": "active",
        "raft_id": None,
        "api_addr": "127.0.0.5",
        "addr": "127.0.0.5",
        "raft_addr": None,
        "labels": {"zone": "a"},
        "operator_labels": {},
        "reported_labels": {"zone": "a"},
        "resources": {"cpus": 2.0},
        "created_at": T0 + 1,
        "updated_at": T0 + 1,
        "version": 3,
    }
    assert queries.node(conn(log), "worker-a") == worker


def test_operator_labels_win_over_reported_ones_and_outlive_a_worker_reporting_again(log: Log) -> None:
    cluster_with_workers(log, "worker-a")  # reports zone=a
    ok(log.apply(c.SetNodeLabels("worker-a", {"zone": "eu", "disk": "ssd", "gpu": "1"}, [], T0 + 5))[0])
    ok(log.apply(c.SetNodeLabels("worker-a", {}, ["gpu", "never-set"], T0 + 6))[0])
    node = queries.node(conn(log), "worker-a")
    assert node is not None
    assert node["labels"] == {"zone": "eu", "disk": "ssd"}
    assert node["operator_labels"] == {"disk": "ssd", "zone": "eu"}
    reported = {"zone": "b", "rack": "r1"}
    ok(log.apply(c.UpdateNode("worker-a", "127.0.0.5", reported, {"cpus": 2.0}, T0 + 7))[0])
    node = queries.node(conn(log), "worker-a")
    assert node is not None
    assert node["labels"] == {"zone": "eu", "rack": "r1", "disk": "ssd"}
    assert node["operator_labels"] == {"disk": "ssd", "zone": "eu"}
    assert node["reported_labels"] == {"zone": "b", "rack": "r1"}
    ok(log.apply(c.SetNodeLabels("worker-a", {}, ["zone"], T0 + 8))[0])  # the worker's own zone again
    assert log.apply(c.SetNodeLabels("nope", {"a": "b"}, [], T0 + 9))[0]["error"] == "not_found"
    node = queries.node(conn(log), "worker-a")
    assert node is not None and node["labels"] == {"zone": "b", "rack": "r1", "disk": "ssd"}
    assert queries.node(conn(log), "nope") is None
    assert [n["name"] for n in queries.nodes(conn(log), "manager")] == [FOUNDER.name]


def test_service_documents_count_replicas(log: Log) -> None:
    cluster_with_workers(log, "worker-a", "worker-b")
    log.apply(c.CreateService("svc-2", "agent", decode(ServiceSpec, {**SPEC, "mode": "global"}), T0))
    web = queries.service(conn(log), "web")
    assert web is not None
    assert (web["update_status"], web["has_previous"], web["replicas_running"], web["replicas_desired"]) == (
        None,
        False,
        0,
        2,
    )
    log.apply(
        c.CreateTasks(
            [
                new_task("w1", "worker-a", 1),
                new_task("w2", "worker-b", 2),
                new_task("g1", "worker-a", None, service_id="svc-2"),
                new_task("g2", "worker-b", None, service_id="svc-2"),
                new_task("g3", None, None, service_id="svc-2"),
            ],
            T0,
        ),
        status("w1", "running", T0),
        status("w2", "running", T0),
        status("g1", "running", T0),
        status("g2", "failed", T0),
        c.SetTasksDesired(["w2"], "shutdown", "scaled down", T0),  # running, but on its way out
        c.UpdateService("web", {"image": "v2"}, T0),
        c.SetUpdateStatus("web", {"state": "updating"}, T0),
    )
    web, agent = queries.services(conn(log))[::-1]
    assert (web["name"], agent["name"]) == ("web", "agent")
    assert (web["update_status"], web["has_previous"], web["replicas_running"], web["replicas_desired"]) == (
        {"state": "updating"},
        True,
        1,
        2,
    )
    assert web["spec"]["image"] == "v2" and web["id"] == "svc-1"
    # Global: as many as there are unfinished tasks that should run (g1 running, g3 pending).
    assert (agent["replicas_running"], agent["replicas_desired"]) == (1, 2)
    assert queries.service(conn(log), "nope") is None


def test_task_documents_filters_and_order(log: Log) -> None:
    cluster_with_workers(log, "worker-a", "worker-b")
    log.apply(c.CreateService("svc-2", "agent", decode(ServiceSpec, {**SPEC, "mode": "global"}), T0))
    log.apply(c.CreateTasks([new_task("old2", "worker-a", 2), new_task("t1", "worker-b", 1)], T0))
    log.apply(c.CreateTasks([new_task("new2", "worker-b", 2)], T0 + 1))
    log.apply(c.CreateTasks([new_task("g1", "worker-a", None, service_id="svc-2")], T0 + 1))
    log.apply(status("old2", "failed", T0 + 1, exit_code=1, node="worker-a", container_id="c9"))
    web = queries.tasks(conn(log), service_id="svc-1")
    assert [t["id"] for t in web] == ["t1", "new2", "old2"]
    assert [t["name"] for t in web] == ["web.1", "web.2", "web.2"]
    assert web[2] == {
        "id": "old2",
        "service_id": "svc-1",
        "service_name": "web",
        "name": "web.2",
        "slot": 2,
        "node": "worker-a",
        "desired_state": "running",
        "state": "failed",
        "message": "failed",
        "health": "none",
        "container_id": "c9",
        "exit_code": 1,
        "spec_digest": spec_digest(decode(ServiceSpec, SPEC)),
        "created_at": T0,
        "updated_at": T0 + 1,
        "started_at": None,
        "version": log.index,
    }
    assert [t["id"] for t in queries.tasks(conn(log), service_id="svc-1", include_final=False)] == [
        "t1",
        "new2",
    ]
    on_a = queries.tasks(conn(log), node="worker-a")
    assert [(t["id"], t["name"]) for t in on_a] == [("g1", "agent.worker-a"), ("old2", "web.2")]
    assert [t["id"] for t in queries.tasks(conn(log), node="worker-a", include_final=False)] == ["g1"]
    assert len(queries.tasks(conn(log))) == 4
    log.apply(c.CreateTasks([new_task("g2", "worker-b", None, service_id="svc-2")], T0 + 2))
    agent = queries.tasks(conn(log), service_id="svc-2")  # global: by node, not by age
    assert [(t["id"], t["name"]) for t in agent] == [("g1", "agent.worker-a"), ("g2", "agent.worker-b")]
    assert queries.task(conn(log), "old2") == web[2]
    assert queries.task(conn(log), "nope") is None


def test_assignments_are_the_protocols_task_documents(log: Log) -> None:
    cluster_with_workers(log, "worker-a", "worker-b")
    log.apply(
        c.CreateTasks(
            [
                new_task("t2", "worker-a", 2),
                new_task("t1", "worker-a", 1),
                new_task("t3", "worker-b", 3),
                new_task("t0", "worker-a", 4),
            ],
            T0,
        ),
        status("t0", "complete", T0),
        status("t1", "running", T0),
    )
    docs = queries.assignments(conn(log), "worker-a")
    assert docs == [
        {
            "task_id": task_id,
            "service_id": "svc-1",
            "service_name": "web",
            "slot": slot,
            "desired_state": "running",
            "state": state,
            "spec": to_doc(decode(ServiceSpec, SPEC).task_spec()),
            "spec_digest": spec_digest(decode(ServiceSpec, SPEC)),
        }
        for task_id, slot, state in (("t1", 1, "running"), ("t2", 2, "assigned"))
    ]
    assert queries.assignments(conn(log), "nope") == []


def test_the_assignments_digest_changes_with_what_a_worker_must_do(log: Log) -> None:
    cluster_with_workers(log, "worker-a")

    def digest() -> str:
        return queries.assignments_digest(queries.assignments(conn(log), "worker-a"))

    seen = [digest()]
    assert seen[0] == queries.assignments_digest([])
    log.apply(c.CreateTasks([new_task("t1", "worker-a", 1), new_task("t2", "worker-a", 2)], T0))
    seen.append(digest())
    log.apply(status("t1", "running", T0))
    assert digest() == seen[-1], "a state the worker reported itself is nothing new for it"
    log.apply(c.SetTasksDesired(["t1"], "shutdown", "scaled down", T0))
    seen.append(digest())
    log.apply(status("t1", "shutdown", T0))
    seen.append(digest())
    log.apply(c.CreateTasks([new_task("t3", "worker-a", 3)], T0))
    seen.append(digest())
    assert len(set(seen)) == len(seen), seen
    docs = queries.assignments(conn(log), "worker-a")
    assert queries.assignments_digest(docs[::-1]) == seen[-1]  # a set: order does not matter
    assert queries.assignments_digest([{**docs[0], "spec_digest": "other"}, docs[1]]) != seen[-1]


def test_a_second_worker_registration_gets_its_own_secret(log: Log) -> None:
    cluster_with_workers(log, "worker-a")
    log.apply(register("worker-b", token=WORKER_TOKEN))
    assert queries.node_secret_hash(conn(log), "worker-b") == "secret-of-worker-b"
    assert queries.count_nodes(conn(log), "worker") == 2
