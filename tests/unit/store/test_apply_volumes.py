"""Apply of the volume commands: a node's reported inventory replaces the stored one (keeping what it
still has, removal requests included), a removal is refused while a spec mounts the name, and a
request ends with the volume or with its node."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from tests.unit.store.log import SPEC, T0, Log, cluster_with_workers, ok
from warren.spec.mounts import MAX_NODE_VOLUMES
from warren.spec.service import ServiceSpec, decode
from warren.store import commands as c
from warren.store import volumes

DATA_MOUNT = {"type": "volume", "source": "data", "target": "/data"}


def report(node: str, *volumes: tuple[str, str], at: float = T0 + 10) -> c.NodeVolumes:
    return c.NodeVolumes(node, [c.VolumeRecord(n, d) for n, d in volumes], at)  # type: ignore[arg-type]


def rows(log: Log) -> list[dict[str, Any]]:
    return [dict(r) for r in log.store.conn.execute("SELECT * FROM volumes ORDER BY node, name, driver")]


def test_a_report_replaces_the_nodes_inventory_and_keeps_what_it_still_has(log: Log) -> None:
    cluster_with_workers(log, "w1", "w2")
    answer = ok(log.apply(report("w1", ("data", "docker"), ("logs", "process")))[0])
    assert answer["added"] == [{"name": "data", "driver": "docker"}, {"name": "logs", "driver": "process"}]
    ok(log.apply(report("w2", ("data", "docker")))[0])
    first = log.index
    answer = ok(log.apply(report("w1", ("data", "docker"), ("new", "docker"), at=T0 + 20))[0])
    assert answer == {"node": "w1", "added": [{"name": "new", "driver": "docker"}],
                      "removed": [{"name": "logs", "driver": "process"}]}
    assert [(r["node"], r["name"], r["driver"], r["created_at"]) for r in rows(log)] == [
        ("w1", "data", "docker", T0 + 10),  # kept: its first report's time
        ("w1", "new", "docker", T0 + 20),
        ("w2", "data", "docker", T0 + 10),
    ]
    assert volumes.of_node(log.store.conn, "w1") == [("data", "docker"), ("new", "docker")]
    assert volumes.held(log.store.conn)["w2"] == frozenset({("data", "docker")})
    assert [r["version"] for r in rows(log)] == [first - 1, first + 1, first]
    # An empty report empties it.
    ok(log.apply(report("w1"))[0])
    assert volumes.of_node(log.store.conn, "w1") == []


def test_a_report_of_an_unknown_node_is_refused(log: Log) -> None:
    cluster_with_workers(log, "w1")
    (answer,) = log.apply(report("w9", ("data", "docker")))
    assert answer["error"] == "not_found" and "w9" in answer["message"]
    assert rows(log) == []


def test_a_report_with_a_bad_name_is_refused_by_the_codec(log: Log) -> None:
    cluster_with_workers(log, "w1")
    payload = orjson.dumps({"v": 1, "op": "node.volumes", "node": "w1",
                            "volumes": [{"name": "../etc", "driver": "docker"}], "at": T0})
    (answer,) = log.apply(payload)
    assert answer["error"] == "invalid" and "volumes[0].name" in answer["message"]
    payload = orjson.dumps({"v": 1, "op": "node.volumes", "node": "w1",
                            "volumes": [{"name": "data", "driver": "zfs"}], "at": T0})
    assert log.apply(payload)[0]["error"] == "invalid"
    too_many = [{"name": f"v{i}", "driver": "docker"} for i in range(MAX_NODE_VOLUMES + 1)]
    payload = orjson.dumps({"v": 1, "op": "node.volumes", "node": "w1", "volumes": too_many, "at": T0})
    assert log.apply(payload)[0]["error"] == "invalid"


def test_removal_is_refused_while_a_spec_mounts_the_name_naming_the_services(log: Log) -> None:
    cluster_with_workers(log, "w1")
    for sid, name in (("svc-db", "db"), ("svc-db2", "db2")):
        spec = decode(ServiceSpec, {**SPEC, "mounts": [DATA_MOUNT]})
        ok(log.apply(c.CreateService(sid, name, spec, T0))[0])
    ok(log.apply(report("w1", ("data", "docker")))[0])
    (answer,) = log.apply(c.RemoveVolume("w1", "data", T0 + 30))
    assert answer["error"] == "conflict"
    assert "volume 'data' is in use by services db, db2" in answer["message"]
    assert rows(log)[0]["remove_at"] is None
    assert volumes.listing(log.store.conn)[0]["services"] == ["db", "db2"]
    ok(log.apply(c.RemoveService("db", T0 + 31))[0])
    (answer,) = log.apply(c.RemoveVolume("w1", "data", T0 + 32))
    assert "service db2" in answer["message"] and "services" not in answer["message"]


def test_a_removal_is_recorded_until_the_worker_no_longer_reports_the_volume(log: Log) -> None:
    cluster_with_workers(log, "w1", "w2")
    ok(log.apply(report("w1", ("data", "docker"), ("data", "process"), ("keep", "docker")))[0])
    ok(log.apply(report("w2", ("data", "docker")))[0])
    assert ok(log.apply(c.RemoveVolume("w1", "data", T0 + 30))[0]) == {
        "node": "w1", "name": "data", "status": "removal requested"}
    ok(log.apply(c.RemoveVolume("w1", "data", T0 + 40))[0])  # asked again: the first time stays
    assert [(r["name"], r["driver"], r["remove_at"]) for r in rows(log) if r["node"] == "w1"] == [
        ("data", "docker", T0 + 30), ("data", "process", T0 + 30), ("keep", "docker", None)]
    assert volumes.removals(log.store.conn) == {"w1": ["data"]}
    listed = volumes.listing(log.store.conn, "data")
    assert [(v["node"], v["driver"], v["removal_pending"], v["node_state"]) for v in listed] == [
        ("w1", "docker", True, "ready"), ("w1", "process", True, "ready"), ("w2", "docker", False, "ready")]
    # The same report again keeps the request; one without the volume ends it.
    ok(log.apply(report("w1", ("data", "docker"), ("data", "process"), ("keep", "docker")))[0])
    assert volumes.removals(log.store.conn) == {"w1": ["data"]}
    ok(log.apply(report("w1", ("keep", "docker")))[0])
    assert volumes.removals(log.store.conn) == {}
    # Reported again later (a new task made it again): a new volume, no request.
    ok(log.apply(report("w1", ("data", "docker"), ("keep", "docker")))[0])
    assert volumes.removals(log.store.conn) == {}


def test_a_removal_of_a_volume_the_node_does_not_have_is_not_found(log: Log) -> None:
    cluster_with_workers(log, "w1", "w2")
    ok(log.apply(report("w2", ("data", "docker")))[0])
    (answer,) = log.apply(c.RemoveVolume("w1", "data", T0 + 30))
    assert answer == {"error": "not_found", "message": "node w1 has no volume named 'data'"}


def test_a_pending_removal_is_not_sent_while_a_spec_mounts_the_name_again(log: Log) -> None:
    cluster_with_workers(log, "w1")
    ok(log.apply(report("w1", ("data", "docker")))[0])
    ok(log.apply(c.RemoveVolume("w1", "data", T0 + 30))[0])
    spec = decode(ServiceSpec, {**SPEC, "mounts": [DATA_MOUNT]})
    ok(log.apply(c.CreateService("svc-db", "db", spec, T0 + 31))[0])
    assert volumes.removals(log.store.conn) == {}


@pytest.mark.parametrize("how", ["node.remove", "manager.reset"])
def test_a_removed_nodes_volumes_and_requests_go_with_it(log: Log, how: str) -> None:
    cluster_with_workers(log, "w1", "w2")
    ok(log.apply(report("w1", ("data", "docker")))[0])
    ok(log.apply(report("w2", ("data", "docker")))[0])
    ok(log.apply(c.RemoveVolume("w1", "data", T0 + 30))[0])
    if how == "node.remove":
        ok(log.apply(c.RemoveNode("w1", T0 + 40))[0])
        assert [(r["node"], r["name"]) for r in rows(log)] == [("w2", "data")]
    else:  # a restore: the volumes of nodes that are not in the restored state are dropped
        log.store.conn.execute("INSERT INTO volumes VALUES ('manager-9-old', 'x', 'docker', NULL, 0, 1)")
        manager = c.ManagerRecord("manager-1-new", 1, "127.0.0.1:8080", "127.0.0.1:7946")
        ok(log.apply(c.ResetManagers(manager, T0 + 40))[0])
        assert [r["node"] for r in rows(log)] == ["w1", "w2"]
    assert volumes.removals(log.store.conn) == ({} if how == "node.remove" else {"w1": ["data"]})
