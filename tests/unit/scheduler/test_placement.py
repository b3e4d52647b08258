"""Placement: filters with reasons a user understands, spread, and batches that see their own load."""

from __future__ import annotations

from warren.scheduler.placement import (
    Candidate,
    NodeInfo,
    NodeLoad,
    Placement,
    Placer,
    TaskRequest,
    format_bytes,
    matches,
    place,
    static_rejection,
)

MIB = 1024 * 1024
GIB = 1024 * MIB


def node(
    name: str,
    *,
    state: str = "ready",
    availability: str = "active",
    role: str = "worker",
    labels: dict[str, str] | None = None,
    cpus: float | None = 4.0,
    memory: int | None = 8 * GIB,
    drivers: tuple[str, ...] = ("docker", "process"),
    allow_privileged: bool = False,
    allow_devices: tuple[str, ...] = (),
    allow_binds: tuple[str, ...] = (),
) -> NodeInfo:
    return NodeInfo(name, role, state, availability, labels or {}, cpus, memory, frozenset(drivers),
                    allow_privileged, allow_devices, allow_binds)


def req(service: str = "svc-a", **kw: object) -> TaskRequest:
    return TaskRequest(service_id=service, driver=str(kw.pop("driver", "docker")), **kw)  # type: ignore[arg-type]


def nodes_of(*infos: NodeInfo) -> list[Candidate]:
    return [Candidate(n) for n in infos]


# -- spread -------------------------------------------------------------------------------------------


def test_a_batch_spreads_evenly_and_deterministically() -> None:
    placed = place([req() for _ in range(6)], nodes_of(node("w3"), node("w1"), node("w2")))
    assert [p.node for p in placed] == ["w1", "w2", "w3", "w1", "w2", "w3"]
    assert all(p.reason == "" for p in placed)


def test_spread_prefers_fewest_of_the_same_service_then_fewest_in_all() -> None:
    candidates = [
        Candidate(node("w1"), NodeLoad(tasks=5, per_service={"svc-a": 0, "svc-b": 5})),
        Candidate(node("w2"), NodeLoad(tasks=1, per_service={"svc-a": 1})),
        Candidate(node("w3"), NodeLoad(tasks=2, per_service={"svc-b": 2})),
    ]
    # Service a: w1 and w3 have none of it; w3 has fewer tasks in all.
    assert place([req("svc-a")], candidates) == [Placement("w3")]
    # Service c (on no node yet): fewest tasks in all wins.
    assert place([req("svc-c")], candidates) == [Placement("w2")]


def test_placer_keeps_the_load_between_calls() -> None:
    placer = Placer(nodes_of(node("w1", memory=1 * GIB), node("w2", memory=1 * GIB)))
    assert placer.place(req(memory=768 * MIB)).node == "w1"
    assert placer.place(req(memory=768 * MIB)).node == "w2"
    third = placer.place(req(memory=768 * MIB))
    assert third.node is None
    assert third.reason == "no suitable node: 2 nodes lack 768 MiB of free memory"


# -- filters and their reasons ------------------------------------------------------------------------


def test_memory_that_fits_nowhere_names_the_resource() -> None:
    candidates = [
        Candidate(node("w1", memory=1 * GIB), NodeLoad(memory=700 * MIB)),
        Candidate(node("w2", memory=256 * MIB)),
    ]
    (p,) = place([req(memory=512 * MIB)], candidates)
    assert p == Placement(None, "no suitable node: 2 nodes lack 512 MiB of free memory")


def test_cpus_are_summed_with_the_reservations_already_there() -> None:
    candidates = [Candidate(node("w1", cpus=2.0), NodeLoad(cpus=1.5))]
    assert place([req(cpus=0.5)], candidates)[0].node == "w1"
    (p,) = place([req(cpus=0.75)], candidates)
    assert p.reason == "no suitable node: 1 node lacks 0.75 free CPUs"
    # 0.1 + 0.2 fits in 0.3 (no float surprise).
    assert place([req(cpus=0.2)], [Candidate(node("w1", cpus=0.3), NodeLoad(cpus=0.1))])[0].node == "w1"


def test_a_node_that_reports_no_limit_is_not_limited() -> None:
    assert (
        place([req(cpus=64.0, memory=512 * GIB)], nodes_of(node("w1", cpus=None, memory=None)))[0].node
        == "w1"
    )


def test_reasons_are_counted_most_common_first() -> None:
    candidates = nodes_of(
        node("w1", memory=256 * MIB),
        node("w2", memory=256 * MIB),
        node("w3", state="down"),
        node("w4", labels={"zone": "us"}, memory=256 * MIB),
        node("w5", availability="drain"),
    )
    (p,) = place([req(memory=512 * MIB, constraints=("node.labels.zone==eu",))], candidates)
    # w1 and w2 lack the label too: a node is explained by the first filter that refuses it.
    assert p.reason == (
        "no suitable node: 3 nodes do not match node.labels.zone==eu, 1 node is down, 1 node is drained"
    )
    (p,) = place([req(memory=512 * MIB)], candidates)
    assert (
        p.reason == "no suitable node: 3 nodes lack 512 MiB of free memory, 1 node is down, 1 node is drained"
    )


def test_no_nodes_at_all() -> None:
    assert place([req()], []) == [Placement(None, "no suitable node: there are no worker nodes")]


def test_driver_mismatch() -> None:
    candidates = nodes_of(node("w1", drivers=("process",)), node("m1", role="manager", drivers=()))
    (p,) = place([req(driver="docker")], candidates)
    # The manager without drivers runs nothing at all: it is not mentioned.
    assert p == Placement(None, "no suitable node: 1 node has no docker driver")
    assert place([req(driver="process")], candidates)[0].node == "w1"


def test_host_port_conflicts() -> None:
    candidates = [
        Candidate(node("w1"), NodeLoad(ports=frozenset({(8080, "tcp")}))),
        Candidate(node("w2"), NodeLoad(ports=frozenset({(8080, "udp")}))),
    ]
    # Same port, other protocol: no conflict.
    assert place([req(ports=((8080, "tcp"),))], candidates)[0].node == "w2"
    # Two tasks of a batch publishing the same port cannot share a node either.
    placed = place([req(ports=((9000, "tcp"),)) for _ in range(3)], candidates)
    assert [p.node for p in placed[:2]] == ["w1", "w2"]
    assert placed[2].reason == "no suitable node: 2 nodes already use host port 9000/tcp"


def test_constraints() -> None:
    eu = node("eu-1", labels={"zone": "eu"})
    us = node("us-1", labels={"zone": "us"})
    bare = node("bare")
    mgr = node("mgr", role="manager")
    assert matches(eu, "node.labels.zone==eu") and not matches(us, "node.labels.zone==eu")
    assert matches(us, "node.labels.zone != eu") and matches(bare, "node.labels.zone!=eu")
    assert not matches(bare, "node.labels.zone==eu")
    assert matches(eu, "node.name==eu-1") and matches(us, "node.name!=eu-1")
    assert matches(mgr, "node.role==manager") and not matches(eu, "node.role==manager")
    assert not matches(eu, "zone==eu")  # malformed: matches nothing
    placed = place(
        [req(constraints=("node.labels.zone==eu", "node.role==worker")) for _ in range(2)],
        nodes_of(eu, us, bare, mgr),
    )
    assert [p.node for p in placed] == ["eu-1", "eu-1"]


def test_static_rejection_order() -> None:
    down_and_drained = node("w1", state="down", availability="drain", drivers=())
    r = static_rejection(down_and_drained, req())
    assert r is not None and r.singular == "is down"
    joining = static_rejection(node("m2", state="joining"), req())
    assert joining is not None and joining.singular == "is not ready (joining)"
    assert static_rejection(node("w1"), req(constraints=("node.name==w1",))) is None
    # The driver first, then what the driver lacks, then constraints, then host access.
    unsupported = req(driver="process", unsupported=("container.read_only",), constraints=("node.name==x",),
                      privileged=True)
    r = static_rejection(node("w1", drivers=("docker",)), unsupported)
    assert r is not None and r.singular == "has no process driver"
    r = static_rejection(node("w1"), unsupported)
    assert r is not None and r.singular.endswith("not supported by the process runtime")
    r = static_rejection(node("w1"), req(constraints=("node.name==x",), privileged=True))
    assert r is not None and r.singular.startswith("does not match")


# -- host access and the process runtime ----------------------------------------------------------------


def test_a_process_task_with_an_option_the_process_runtime_lacks_fits_nowhere() -> None:
    task = req(driver="process", unsupported=("container.read_only", "container.cap_add"))
    (p,) = place([task], nodes_of(node("w1"), node("w2", drivers=("docker",))))
    assert p == Placement(None, "no suitable node: 1 node has no process driver, 1 node cannot apply "
                          "container.read_only, container.cap_add: not supported by the process runtime")
    # A docker task with the same options goes anywhere with docker.
    assert place([req(driver="docker")], nodes_of(node("w1")))[0].node == "w1"


def test_a_privileged_task_goes_only_to_a_worker_that_allows_it() -> None:
    candidates = nodes_of(node("w1"), node("w2", allow_privileged=True))
    assert [p.node for p in place([req(privileged=True)] * 2, candidates)] == ["w2", "w2"]
    (p,) = place([req(privileged=True)], nodes_of(node("w1"), node("w3")))
    assert p == Placement(None, "no suitable node: 2 nodes do not allow privileged tasks "
                          "(worker start --allow-privileged)")


def test_a_device_goes_only_to_a_worker_that_allows_its_path() -> None:
    candidates = nodes_of(
        node("w1"), node("w2", allow_devices=("/dev/ttyUSB0",)), node("w3", allow_devices=("/dev/serial",))
    )
    assert place([req(devices=("/dev/ttyUSB0",))], candidates)[0].node == "w2"
    assert place([req(devices=("/dev/serial/by-id/radio",))], candidates)[0].node == "w3"
    (p,) = place([req(devices=("/dev/serial", "/dev/ttyUSB0"))], candidates)
    assert p.node is None
    assert "1 node does not allow device /dev/ttyUSB0 (worker start --allow-device)" in p.reason
    assert "2 nodes do not allow device /dev/serial (worker start --allow-device)" in p.reason
    # A sibling whose name only starts like an allowed path is not inside it.
    (p,) = place([req(devices=("/dev/ttyUSB00",))], candidates)
    assert p.node is None
    # A global task pinned to a node is told the same.
    (p,) = place([req(node="w1", devices=("/dev/ttyUSB0",))], candidates)
    assert p == Placement(None, "no suitable node: 1 node does not allow device /dev/ttyUSB0 "
                          "(worker start --allow-device)")


def test_a_bind_mount_goes_only_to_a_worker_that_allows_its_source() -> None:
    candidates = nodes_of(node("w1"), node("w2", allow_binds=("/srv/data", "/media")))
    assert place([req(binds=("/srv/data",))], candidates)[0].node == "w2"
    assert place([req(binds=("/srv/data/db", "/media/usb"))], candidates)[0].node == "w2"
    (p,) = place([req(binds=("/srv/database",))], candidates)  # only starts like an allowed root
    assert p == Placement(None, "no suitable node: 2 nodes do not allow bind mount of /srv/database "
                          "(worker start --allow-bind)")
    # Devices are looked at first, then binds.
    (p,) = place([req(devices=("/dev/null",), binds=("/etc",))], nodes_of(node("w1")))
    assert p.reason == ("no suitable node: 1 node does not allow device /dev/null "
                        "(worker start --allow-device)")


def test_pinned_tasks_consider_only_their_node() -> None:
    candidates = nodes_of(node("w1"), node("w2", memory=128 * MIB))
    assert place([req(node="w2")], candidates)[0].node == "w2"
    (p,) = place([req(node="w2", memory=512 * MIB)], candidates)
    assert p == Placement(None, "no suitable node: 1 node lacks 512 MiB of free memory")
    assert place([req(node="gone")], candidates)[0] == Placement(None, "node gone no longer exists")


def test_format_bytes() -> None:
    assert format_bytes(512 * MIB) == "512 MiB"
    assert format_bytes(3 * GIB // 2) == "1.5 GiB"
    assert format_bytes(4 * 1024) == "4 KiB"
    assert format_bytes(100) == "100 B"
