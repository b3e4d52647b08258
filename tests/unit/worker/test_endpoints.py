"""The service endpoints a worker holds: checked from the session answer, kept in its data dir, written as
a hosts file, answered by its DNS server, and told to process tasks; and a manager of an earlier
version (which refuses `known_endpoints`) still keeps the worker's session going."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any

import dns.asyncquery
import dns.message
import orjson
import pytest

from tests.unit.fake_manager import FakeManager, task_doc
from tests.unit.worker.agents import M1, M2, make_settings, worker
from tests.unit.worker.fake_runtime import FakeRuntime
from warren.errors import InvalidError
from warren.testing.wait import eventually_async
from warren.worker.endpoints import (
    MAX_BACKENDS_PER_PORT,
    MAX_INGRESS_PORTS,
    MAX_SERVICES,
    EndpointsTable,
    IngressRoute,
    hosts_text,
    parse,
)
from warren.worker.ingress import Backend

API = {
    "healthy": ["10.0.0.2", "10.0.0.3"],
    "tasks": [
        {"task_id": "t1", "slot": 1, "node": "n1", "addr": "10.0.0.1", "healthy": False},
        {"task_id": "t2", "slot": 2, "node": "n2", "addr": "10.0.0.2", "healthy": True},
        {"task_id": "t3", "slot": 3, "node": "n3", "addr": "10.0.0.3", "healthy": True},
    ],
}


BACKEND = {"addr": "10.0.0.2", "port": 32768, "task_id": "t2", "node": "n2"}
INGRESS = {"8080": {"service": "api", "backends": [BACKEND, {**BACKEND, "addr": "10.0.0.3", "port": 32769,
                                                                "task_id": "t3", "node": "n3"}]}}


def doc(**services: Any) -> dict[str, Any]:
    return {"digest": "abc", "services": services}


def with_ingress(ingress: Any) -> dict[str, Any]:
    return {**doc(api=API), "ingress": ingress}


# -- checking -----------------------------------------------------------------------------------------


def test_parse_lower_cases_names_and_keeps_each_address_once() -> None:
    endpoints = parse(doc(Api={**API, "healthy": ["10.0.0.2", "10.0.0.2", "10.0.0.3"]}))
    assert list(endpoints.services) == ["api"]
    assert endpoints.services["api"].healthy == ("10.0.0.2", "10.0.0.3")
    assert endpoints.services["api"].task_addrs == ("10.0.0.1", "10.0.0.2", "10.0.0.3")


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        ({"digest": "", "services": {}}, "endpoints.digest"),
        ({"digest": "d", "services": []}, "endpoints.services"),
        (doc(**{"my_api": API}), "DNS label"),
        (doc(**{"-api": API}), "DNS label"),
        (doc(**{"a" * 64: API}), "DNS label"),
        (doc(api={**API, "healthy": ["10.0.0.300"]}), "healthy[0]"),
        (doc(api={**API, "healthy": "10.0.0.2"}), "healthy: expected a list"),
        (doc(api={**API, "tasks": [{**API["tasks"][0], "addr": "host lan"}]}), "tasks[0].addr"),
        (doc(api={**API, "tasks": [{**API["tasks"][0], "addr": "10.0.0.256"}]}), "tasks[0].addr"),
        (doc(api={**API, "tasks": [{**API["tasks"][0], "healthy": 1}]}), "tasks[0].healthy"),
        (doc(api={**API, "tasks": [{**API["tasks"][0], "slot": -1}]}), "tasks[0].slot"),
        (doc(api={**API, "tasks": [{**API["tasks"][0], "node": ""}]}), "tasks[0].node"),
        (doc(api=API, API=API), "the same name twice"),
    ],
)
def test_parse_refuses_bad_bytes_naming_the_field(bad: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidError, match=field.replace("[", r"\[").replace("]", r"\]")):
        parse(bad)


def test_a_host_name_address_is_left_out_not_refused() -> None:
    task = {**API["tasks"][0], "addr": "node-1.lan"}
    endpoints = parse(doc(api={"healthy": ["node-1.lan", "10.0.0.2"], "tasks": [task, API["tasks"][1]]}))
    assert endpoints.services["api"].healthy == ("10.0.0.2",)
    assert [t.addr for t in endpoints.services["api"].tasks] == ["10.0.0.2"]


def test_parse_bounds_the_number_of_services() -> None:
    with pytest.raises(InvalidError, match=f"at most {MAX_SERVICES} services"):
        parse(doc(**{f"s{i}": {"healthy": [], "tasks": []} for i in range(MAX_SERVICES + 1)}))


def test_parse_takes_the_ingress_table() -> None:
    endpoints = parse(with_ingress({**INGRESS, "443": {"service": "Web", "backends": []}}))
    assert endpoints.ingress == {
        8080: IngressRoute("api", (Backend("10.0.0.2", 32768, "t2", "n2"),
                                   Backend("10.0.0.3", 32769, "t3", "n3"))),
        443: IngressRoute("web", ()),
    }
    assert endpoints.ingress_routes()[8080][1].port == 32769
    assert parse(doc(api=API)).ingress == {}  # an older leader sends none: no ingress port


def _backend(**change: Any) -> dict[str, Any]:
    return {"8080": {"service": "api", "backends": [{**BACKEND, **change}]}}


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        ([], "endpoints.ingress: expected an object"),
        ({"0": INGRESS["8080"]}, "endpoints.ingress.'0': a published port"),
        ({"65536": INGRESS["8080"]}, "'65536': a published port"),
        ({"080": INGRESS["8080"]}, "'080': a published port"),
        ({"+80": INGRESS["8080"]}, r"'\+80': a published port"),
        ({" 80": INGRESS["8080"]}, "a published port"),
        ({"80\n": INGRESS["8080"]}, "a published port"),
        ({"http": INGRESS["8080"]}, "a published port"),
        ({"8080": []}, "'8080': expected an object"),
        ({"8080": {"backends": []}}, "'8080'.service"),
        ({"8080": {"service": "no_label", "backends": []}}, "'8080'.service"),
        ({"8080": {"service": "api"}}, "'8080'.backends: expected a list"),
        ({"8080": {"service": "api", "backends": ["10.0.0.2:80"]}}, "backends[0]: expected an object"),
        (_backend(addr="node-1.lan"), "backends[0].addr: expected an IP address"),
        (_backend(addr="10.0.0.256"), "backends[0].addr"),
        (_backend(addr=None), "backends[0].addr"),
        (_backend(port=0), "backends[0].port"),
        (_backend(port=65536), "backends[0].port"),
        (_backend(port=True), "backends[0].port"),
        (_backend(port="80"), "backends[0].port"),
        (_backend(task_id=""), "backends[0].task_id"),
        (_backend(task_id="t" * 129), "backends[0].task_id"),
        (_backend(node="n\x00"), "backends[0].node"),
        (_backend(node=None), "backends[0].node"),
    ],
)
def test_parse_refuses_a_bad_ingress_table_naming_the_field(bad: Any, field: str) -> None:
    with pytest.raises(InvalidError, match=field.replace("[", r"\[").replace("]", r"\]")):
        parse(with_ingress(bad))


def test_parse_bounds_the_ingress_table() -> None:
    route = {"service": "api", "backends": []}
    with pytest.raises(InvalidError, match=f"at most {MAX_INGRESS_PORTS} ports"):
        parse(with_ingress({str(p): route for p in range(1, MAX_INGRESS_PORTS + 2)}))
    many = {"service": "api", "backends": [BACKEND] * (MAX_BACKENDS_PER_PORT + 1)}
    with pytest.raises(InvalidError, match=f"at most {MAX_BACKENDS_PER_PORT} backends"):
        parse(with_ingress({"80": many}))


def test_hosts_text_lists_healthy_addresses_under_the_name_and_every_replica_under_tasks() -> None:
    lines = hosts_text(parse(doc(api=API))).splitlines()
    assert lines[1:] == [
        "10.0.0.2 api api.warren",
        "10.0.0.3 api api.warren",
        "10.0.0.1 tasks.api tasks.api.warren",
        "10.0.0.2 tasks.api tasks.api.warren",
        "10.0.0.3 tasks.api tasks.api.warren",
    ]
    assert hosts_text(None).splitlines()[1:] == []


# -- the table on disk ------------------------------------------------------------------------------


def test_the_table_survives_a_restart_and_a_bad_answer_changes_nothing(tmp_path: Path) -> None:
    table = EndpointsTable(str(tmp_path))
    table.load()
    assert table.digest is None
    assert Path(table.hosts_path).read_text().count("\n") == 1  # there, with no names yet
    assert table.received(doc(api=API))
    assert table.received(None)  # "unchanged"
    assert not table.received(doc(api={**API, "healthy": ["no/pe"]}))
    assert table.digest == "abc"
    again = EndpointsTable(str(tmp_path))
    again.load()
    assert again.current == table.current
    assert table.received(with_ingress(INGRESS))
    again.load()
    assert again.current == table.current and again.current is not None and 8080 in again.current.ingress
    assert "10.0.0.2 api api.warren" in Path(again.hosts_path).read_text()


def test_a_damaged_table_file_is_ignored(tmp_path: Path) -> None:
    (tmp_path / "endpoints.json").write_bytes(orjson.dumps(doc(api={"healthy": ["10.0.0.999"], "tasks": []})))
    table = EndpointsTable(str(tmp_path))
    table.load()
    assert table.current is None


# -- the worker -------------------------------------------------------------------------------------


async def test_the_worker_takes_endpoints_from_the_session_and_answers_them(tmp_path: Path) -> None:
    m = FakeManager()
    rt = FakeRuntime("process")
    async with worker(make_settings(tmp_path / "w", runtime="process"), rt, {M1: m}) as w:
        await eventually_async(lambda: len(m.sessions) >= 2, 5.0, "session calls")
        # The first answer says the manager knows endpoints; the next call asks for them.
        assert "known_endpoints" not in m.sessions[0]
        assert m.sessions[1]["known_endpoints"] is None
        m.set_endpoints({"api": API})
        digest = m.endpoints["digest"] if m.endpoints else None
        await eventually_async(lambda: m.sessions[-1].get("known_endpoints") == digest, 5.0,
                               "the worker says it holds the endpoints")
        loop = w.agent.worker_loop
        assert loop is not None and loop.dns is not None
        host, port = loop.dns.address
        answer = await dns.asyncquery.udp(dns.message.make_query("api.warren", "A"), host, port=port,
                                          timeout=2.0)
        assert sorted(rr.to_text() for rrset in answer.answer for rr in rrset) == ["10.0.0.2", "10.0.0.3"]
        hosts = Path(loop.endpoints.hosts_path)
        assert "10.0.0.3 api api.warren" in hosts.read_text()

        # A process task is told where both are.
        m.assign(task_doc("t-1", driver="process", command=["sleep", "60"]))
        await eventually_async(lambda: rt.running("t-1"), 5.0, "the task runs")
        run = rt.running("t-1")[0].run
        assert run is not None
        assert run.env["WARREN_DNS"] == f"{host}:{port}"
        assert run.env["WARREN_HOSTS"] == str(hosts)

        # The cluster changes: the file follows.
        m.set_endpoints({"api": {**API, "healthy": ["10.0.0.3"]}})
        await eventually_async(lambda: "10.0.0.2 api " not in hosts.read_text(), 5.0,
                               "the hosts file follows")


async def test_dns_off_gives_process_tasks_the_hosts_file_only(tmp_path: Path) -> None:
    m = FakeManager()
    rt = FakeRuntime("process")
    async with worker(make_settings(tmp_path / "w", runtime="process", dns_addr=None), rt, {M1: m}) as w:
        m.assign(task_doc("t-1", driver="process", command=["sleep", "60"]))
        await eventually_async(lambda: rt.running("t-1"), 5.0, "the task runs")
        loop = w.agent.worker_loop
        assert loop is not None and loop.dns is None
        run = rt.running("t-1")[0].run
        assert run is not None and "WARREN_DNS" not in run.env and "WARREN_HOSTS" in run.env


async def test_docker_tasks_are_not_given_the_process_tasks_variables(tmp_path: Path) -> None:
    m = FakeManager()
    rt = FakeRuntime()
    async with worker(make_settings(tmp_path / "w"), rt, {M1: m}):
        m.assign(task_doc("t-1"))
        await eventually_async(lambda: rt.running("t-1"), 5.0, "the task runs")
        run = rt.running("t-1")[0].run
        assert run is not None and "WARREN_DNS" not in run.env and "WARREN_HOSTS" not in run.env


OLDER_KEYS = frozenset({"node", "known", "addr", "labels", "resources", "volumes"})


async def test_a_manager_of_an_earlier_version_is_never_sent_the_key(tmp_path: Path) -> None:
    m = FakeManager()
    m.session_keys = OLDER_KEYS
    rt = FakeRuntime()
    async with worker(make_settings(tmp_path / "w"), rt, {M1: m}):
        m.assign(task_doc("t-1"))
        await eventually_async(lambda: rt.running("t-1"), 5.0, "the task runs")
        await eventually_async(lambda: len(m.sessions) >= 4, 5.0, "more session calls")
        assert all("known_endpoints" not in s for s in m.sessions)


async def test_failing_over_to_an_older_manager_the_refused_key_is_dropped_then_sent_again(
    tmp_path: Path,
) -> None:
    new, old = FakeManager(), FakeManager()
    old.session_keys = OLDER_KEYS
    rt = FakeRuntime()
    async with worker(make_settings(tmp_path / "w", managers=(M1, M2)), rt, {M1: new, M2: old}):
        await eventually_async(lambda: any("known_endpoints" in s for s in new.sessions), 5.0, "the key sent")
        old.assign(task_doc("t-1"))
        new.go_away()  # the older manager answers from now on
        await eventually_async(lambda: rt.running("t-1"), 5.0, "the task runs under the older manager")
        assert "known_endpoints" in old.sessions[0]  # refused...
        await eventually_async(lambda: len(old.sessions) >= 4, 5.0, "more calls")
        assert all("known_endpoints" not in s for s in old.sessions[1:])  # ...then left out

        old.session_keys = None  # upgraded
        old.set_endpoints({"api": API})
        digest = old.endpoints["digest"] if old.endpoints else None
        await eventually_async(lambda: old.sessions[-1].get("known_endpoints") == digest, 5.0,
                               "the endpoints taken from the upgraded manager")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_an_answer_with_an_ingress_table_makes_the_worker_listen_and_forward(tmp_path: Path) -> None:
    async def hello(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"from the replica " + await reader.readexactly(3))
        writer.close()

    replica = await asyncio.start_server(hello, "127.0.0.1", 0)
    published = _free_port()
    m = FakeManager()
    rt = FakeRuntime()
    settings = make_settings(tmp_path / "w", ingress_host="127.0.0.1")
    async with worker(settings, rt, {M1: m}) as w:
        await eventually_async(lambda: w.agent.worker_loop, 5.0, "the worker loop")
        loop = w.agent.worker_loop
        assert loop is not None and loop.ingress is not None
        await eventually_async(lambda: len(m.sessions) >= 2, 5.0, "session calls")
        assert loop.ingress.bound() == {}  # no table heard: nothing listened on
        backend = {"addr": "127.0.0.1", "port": replica.sockets[0].getsockname()[1], "task_id": "t-1",
                   "node": "worker-2"}
        m.set_endpoints({"api": API}, ingress={str(published): {"service": "api", "backends": [backend]}})
        await eventually_async(lambda: published in loop.ingress.bound() if loop.ingress else None, 5.0,
                               "the worker listens on the published port")
        reader, writer = await asyncio.open_connection("127.0.0.1", published)
        writer.write(b"hi!")
        assert await asyncio.wait_for(reader.read(), 5.0) == b"from the replica hi!"
        writer.close()

        m.set_endpoints({"api": API}, ingress={})  # the service is gone
        await eventually_async(lambda: loop.ingress.bound() == {} if loop.ingress else None, 5.0,
                               "the port is no longer listened on")
    replica.close()


async def test_ingress_off_makes_no_proxy(tmp_path: Path) -> None:
    m = FakeManager()
    async with worker(make_settings(tmp_path / "w", ingress_host=None), FakeRuntime(), {M1: m}) as w:
        await eventually_async(lambda: w.agent.worker_loop, 5.0, "the worker loop")
        assert w.agent.worker_loop is not None and w.agent.worker_loop.ingress is None
