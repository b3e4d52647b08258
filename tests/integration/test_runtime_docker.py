"""DockerRuntime against the real Docker Engine and the local warren-busybox image.

Skipped when no engine answers, except under CI=1, where that is a failure. Every container a test
makes carries a cluster label unique to the test; the fixture removes them all, pass or fail.
"""

from __future__ import annotations

import asyncio
import secrets
import threading
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from tests.integration.images import TEST_IMAGE
from warren.runtime.base import (
    LABEL_CLUSTER,
    LABEL_NODE,
    LABEL_SERVICE,
    LABEL_SERVICE_NAME,
    LABEL_SLOT,
    LABEL_TASK,
    Exit,
    PortMapping,
    RuntimeStartError,
    TaskRun,
)
from warren.runtime.docker import DockerRuntime
from warren.testing.process import free_port
from warren.testing.wait import eventually_async

MIB = 1024 * 1024


@pytest.fixture
def anyio_backend() -> Any:
    return ("asyncio", {"use_uvloop": True})  # what workers run on


@pytest.fixture
def cluster_id(engine: Any) -> Iterator[str]:
    """A cluster label unique to the test; every container carrying it is removed afterwards."""
    cluster = f"test-{secrets.token_hex(4)}"
    yield cluster
    for container in engine.containers.list(all=True, filters={"label": f"{LABEL_CLUSTER}={cluster}"}):
        container.remove(force=True)


@pytest.fixture
async def runtime(cluster_id: str) -> AsyncIterator[DockerRuntime]:
    rt = DockerRuntime(cluster_id, "node-a")
    yield rt
    await rt.close()


def task(task_id: str, command: list[str] | None, *, slot: int | None = 1, **extra: Any) -> TaskRun:
    return TaskRun(
        task_id=task_id,
        service_id="svc-1",
        service_name="web",
        slot=slot,
        image=TEST_IMAGE,
        command=command,
        env=extra.pop("env", {}),
        **extra,
    )


async def next_exit(exits: AsyncIterator[Exit], timeout: float = 10.0) -> Exit:
    return await asyncio.wait_for(exits.__anext__(), timeout)


async def test_start_runs_labelled_container(runtime: DockerRuntime, engine: Any, cluster_id: str) -> None:
    before = time.time()
    cid = await runtime.start(task("t-run", ["sleep", "300"], slot=3, env={"GREETING": "hi"}))

    [inst] = await runtime.list()
    assert (inst.task_id, inst.container_id, inst.running, inst.exit_code) == ("t-run", cid, True, None)
    assert inst.started_at is not None and before - 1 <= inst.started_at <= time.time() + 1
    assert inst.labels == {
        LABEL_CLUSTER: cluster_id,
        LABEL_NODE: "node-a",
        LABEL_SERVICE: "svc-1",
        LABEL_SERVICE_NAME: "web",
        LABEL_TASK: "t-run",
        LABEL_SLOT: "3",
    }
    attrs = engine.api.inspect_container(cid)
    assert attrs["Name"] == "/warren-web.3.t-run"
    assert "GREETING=hi" in attrs["Config"]["Env"]
    assert attrs["HostConfig"]["RestartPolicy"]["Name"] in ("", "no")  # the worker restarts, not Docker


async def test_global_task_is_named_by_node(runtime: DockerRuntime, engine: Any) -> None:
    cid = await runtime.start(task("t-global", ["sleep", "300"], slot=None))
    attrs = engine.api.inspect_container(cid)
    assert attrs["Name"] == "/warren-web.node-a.t-global"
    assert LABEL_SLOT not in attrs["Config"]["Labels"]


async def test_published_port_answers_from_the_host(runtime: DockerRuntime) -> None:
    port = free_port()
    cid = await runtime.start(
        task("t-web", ["httpd", "-f", "-p", "8080", "-h", "/www"], publish=(PortMapping(port, 8080),))
    )

    def fetch(url: str) -> bytes:
        with urllib.request.urlopen(url, timeout=2) as answer:
            return bytes(answer.read())

    page = await eventually_async(
        lambda: asyncio.to_thread(fetch, f"http://127.0.0.1:{port}/"), 15, "the page"
    )
    assert b"hello from warren-busybox" in page
    # The container's own address answers on the container port (what HTTP health checks use).
    address = await runtime.address(cid)
    assert address != "127.0.0.1"
    assert b"warren-busybox" in await asyncio.to_thread(fetch, f"http://{address}:8080/")


async def test_ingress_replicas_get_ephemeral_ports_on_the_ingress_address(cluster_id: str) -> None:
    rt = DockerRuntime(cluster_id, "node-a", ingress_ip="127.0.0.1")
    try:
        httpd = ["httpd", "-f", "-p", "8080", "-h", "/www"]
        publish = (PortMapping(18080, 8080, ingress=True), PortMapping(18081, 8080, ingress=True))
        # Two replicas on one node: no host port of theirs collides.
        first = await rt.start(task("t-in1", httpd, publish=publish))
        second = await rt.start(task("t-in2", httpd, slot=2, publish=publish))
        ports = [await rt.ingress_ports(cid, publish) for cid in (first, second)]
        for found in ports:
            assert sorted(found) == [18080, 18081] and found[18080] == found[18081]  # one binding per target
            assert found[18080] not in (18080, 8080)
        assert ports[0][18080] != ports[1][18080]

        def fetch(url: str) -> bytes:
            with urllib.request.urlopen(url, timeout=2) as answer:
                return bytes(answer.read())

        for found in ports:
            url = f"http://127.0.0.1:{found[18080]}/"
            page = await eventually_async(lambda url=url: asyncio.to_thread(fetch, url), 15, "the page")
            assert b"hello from warren-busybox" in page
        bound = (await rt._run(lambda c: c.api.inspect_container(first)))["HostConfig"]["PortBindings"]
        assert bound == {"8080/tcp": [{"HostIp": "127.0.0.1", "HostPort": ""}]}
        # Gone: nothing to report, nothing guessed.
        await rt.stop(first, 1)
        await rt.remove(first)
        assert await rt.ingress_ports(first, publish) == {}
    finally:
        await rt.close()


async def test_cpu_and_memory_limits_reach_the_engine(runtime: DockerRuntime, engine: Any) -> None:
    cid = await runtime.start(task("t-limits", ["sleep", "300"], cpus=0.5, memory=64 * MIB, stop_timeout_s=4))
    host_config = engine.api.inspect_container(cid)["HostConfig"]
    assert host_config["NanoCpus"] == 500_000_000
    assert host_config["Memory"] == 64 * MIB
    assert engine.api.inspect_container(cid)["Config"]["StopTimeout"] == 4


async def test_exit_is_reported_with_its_code(runtime: DockerRuntime) -> None:
    exits = runtime.exits()
    started = time.monotonic()
    cid = await runtime.start(task("t-exit", ["sh", "-c", "exit 3"]))
    ex = await next_exit(exits)
    assert (ex.task_id, ex.container_id, ex.exit_code) == ("t-exit", cid, 3)
    assert time.monotonic() - started < 5
    [inst] = await runtime.list()
    assert (inst.running, inst.exit_code) == (False, 3)


async def test_stop_then_remove_leaves_nothing(runtime: DockerRuntime, engine: Any) -> None:
    import docker

    exits = runtime.exits()
    # busybox sleep as PID 1 ignores SIGTERM: the stop ends with SIGKILL after the grace period.
    cid = await runtime.start(task("t-stop", ["sleep", "300"]))
    started = time.monotonic()
    await runtime.stop(cid, 1.0)
    assert 0.9 <= time.monotonic() - started < 10
    ex = await next_exit(exits)
    assert (ex.container_id, ex.exit_code) == (cid, 137)
    [inst] = await runtime.list()
    assert not inst.running

    await runtime.remove(cid)
    with pytest.raises(docker.errors.NotFound):
        engine.containers.get(cid)
    assert await runtime.list() == []
    # Idempotent, and unknown containers are no error.
    await runtime.stop(cid, 1.0)
    await runtime.remove(cid)
    await runtime.remove("0" * 64)


async def test_sigterm_stops_a_cooperative_container_within_the_grace(runtime: DockerRuntime) -> None:
    script = "trap 'exit 0' TERM; touch /tmp/ready; while true; do sleep 0.1; done"
    cid = await runtime.start(task("t-term", ["sh", "-c", script]))
    await eventually_async(lambda: _succeeds(runtime, cid, ["test", "-f", "/tmp/ready"]), 10, "the trap")
    started = time.monotonic()
    await runtime.stop(cid, 20.0)
    assert time.monotonic() - started < 10  # far below the 20 s grace: SIGTERM did it
    [inst] = await runtime.list()
    assert (inst.running, inst.exit_code) == (False, 0)


async def _succeeds(runtime: DockerRuntime, cid: str, cmd: list[str]) -> bool:
    return await runtime.exec(cid, cmd, 5) == 0


async def test_two_nodes_on_one_engine_never_see_each_other(cluster_id: str) -> None:
    a, b = DockerRuntime(cluster_id, "node-a"), DockerRuntime(cluster_id, "node-b")
    try:
        exits_a = a.exits()
        cid_a = await a.start(task("t-a", ["sleep", "300"]))
        cid_b = await b.start(task("t-b", ["sh", "-c", "exit 7"]))
        assert [i.container_id for i in await a.list()] == [cid_a]
        b_list = await b.list()
        assert [i.container_id for i in b_list] == [cid_b]
        # b's container exited, yet a's exit stream says nothing until a's own container stops.
        await eventually_async(lambda: _stopped(b, cid_b), 10, "b's container to exit")
        await a.stop(cid_a, 1.0)
        ex = await next_exit(exits_a)
        assert ex.container_id == cid_a
    finally:
        await a.close()
        await b.close()


async def _stopped(rt: DockerRuntime, cid: str) -> bool:
    return any(i.container_id == cid and not i.running for i in await rt.list())


async def test_absent_image_is_a_start_error_naming_it(runtime: DockerRuntime) -> None:
    started = time.monotonic()
    run = TaskRun("t-img", "svc-1", "web", 1, "warren-no-such-image:1.0", None, {})
    with pytest.raises(RuntimeStartError, match="warren-no-such-image:1.0.*could not be pulled"):
        await runtime.start(run)
    assert time.monotonic() - started < 60
    assert await runtime.list() == []


async def test_bad_command_is_a_start_error_and_leaves_no_container(runtime: DockerRuntime) -> None:
    with pytest.raises(RuntimeStartError, match="no-such-binary"):
        await runtime.start(task("t-cmd", ["/no-such-binary"]))
    assert await runtime.list() == []


async def test_port_taken_is_a_start_error(runtime: DockerRuntime) -> None:
    port = free_port()
    await runtime.start(task("t-p1", ["sleep", "300"], publish=(PortMapping(port, 8080),)))
    with pytest.raises(RuntimeStartError, match=str(port)):
        await runtime.start(task("t-p2", ["sleep", "300"], slot=2, publish=(PortMapping(port, 8080),)))
    assert [i.task_id for i in await runtime.list()] == ["t-p1"]


async def test_a_task_started_again_replaces_its_exited_container(runtime: DockerRuntime) -> None:
    exits = runtime.exits()
    first = await runtime.start(task("t-again", ["sh", "-c", "exit 1"]))
    await next_exit(exits)
    second = await runtime.start(task("t-again", ["sleep", "300"]))
    assert second != first
    assert [(i.container_id, i.running) for i in await runtime.list()] == [(second, True)]


async def test_restarted_worker_adopts_its_running_container(cluster_id: str, engine: Any) -> None:
    first = DockerRuntime(cluster_id, "node-a")
    cid = await first.start(task("t-adopt", ["sleep", "300"]))
    await first.close()  # the worker stops; its container keeps running

    second = DockerRuntime(cluster_id, "node-a")
    try:
        [inst] = await second.list()
        assert (inst.container_id, inst.task_id, inst.running) == (cid, "t-adopt", True)
        exits = second.exits()
        engine.api.kill(cid)
        ex = await next_exit(exits)
        assert (ex.container_id, ex.task_id, ex.exit_code) == (cid, "t-adopt", 137)
    finally:
        await second.close()


async def test_exits_survive_a_broken_event_stream(runtime: DockerRuntime) -> None:
    exits = runtime.exits()
    await runtime.start(task("t-first", ["sleep", "300"]))
    first_stream = await eventually_async(lambda: _stream(runtime), 5, "the event stream")
    first_stream.close()  # what an engine restart does to the stream
    await eventually_async(lambda: _new_stream(runtime, first_stream), 10, "a new event stream")
    cid = await runtime.start(task("t-after", ["sh", "-c", "exit 4"], slot=2))
    ex = await next_exit(exits)
    assert (ex.container_id, ex.exit_code) == (cid, 4)


async def test_a_container_that_died_while_the_engine_was_away_is_reported(
    cluster_id: str, engine: Any
) -> None:
    """The engine's event history does not survive its restart: a container that died while the
    stream was down is found by listing once the stream is back."""
    import docker
    import requests

    client = docker.from_env(timeout=30)
    real_events = client.events
    engine_up = threading.Event()
    engine_up.set()

    def events(**kwargs: Any) -> Any:
        if not engine_up.is_set():
            raise requests.exceptions.ConnectionError("engine restarting")
        return real_events(**kwargs)

    client.events = events
    rt = DockerRuntime(cluster_id, "node-a", client)
    try:
        exits = rt.exits()
        cid = await rt.start(task("t-away", ["sleep", "300"]))
        stream = await eventually_async(lambda: _stream(rt), 5, "the event stream")
        engine_up.clear()
        stream.close()
        engine.api.kill(cid)  # its die event goes to nobody
        await eventually_async(lambda: _stopped(rt, cid), 10, "the container to die")
        engine_up.set()
        ex = await next_exit(exits)
        assert (ex.container_id, ex.task_id, ex.exit_code) == (cid, "t-away", 137)
        assert "no engine event stream" in ex.message
    finally:
        await rt.close()
        client.close()


async def _stream(rt: DockerRuntime) -> Any:
    return rt.exit_watch.events.stream


async def _new_stream(rt: DockerRuntime, old: Any) -> bool:
    return rt.exit_watch.events.stream is not None and rt.exit_watch.events.stream is not old


async def test_logs_tail_then_follow_until_the_container_stops(runtime: DockerRuntime) -> None:
    script = (
        "for i in 1 2 3; do echo line$i; done; echo oops >&2;"
        " until [ -f /tmp/go ]; do sleep 0.1; done; echo end"
    )
    cid = await runtime.start(task("t-logs", ["sh", "-c", script]))

    async def read(tail: int | None) -> bytes:
        return b"".join([chunk async for chunk in runtime.logs(cid, follow=False, tail=tail)])

    async def all_four() -> bytes | None:
        out = await read(None)
        return out if out.count(b"\n") == 4 else None

    # stdout and stderr reach the engine through separate pipes: their relative order is not kept.
    everything = await eventually_async(all_four, 10, "the first lines")
    assert sorted(everything.splitlines()) == [b"line1", b"line2", b"line3", b"oops"]
    assert everything.index(b"line1") < everything.index(b"line2") < everything.index(b"line3")
    assert await read(2) == b"".join(line + b"\n" for line in everything.splitlines()[-2:])
    assert await read(0) == b""

    followed: list[bytes] = []

    async def follow() -> None:
        async for chunk in runtime.logs(cid, follow=True, tail=0):
            followed.append(chunk)

    reader = asyncio.create_task(follow())
    await eventually_async(lambda: _following(runtime), 10, "the follow to open")
    assert not reader.done()
    assert await runtime.exec(cid, ["touch", "/tmp/go"], 5) == 0
    await asyncio.wait_for(reader, 10)  # ends by itself when the container stops
    assert b"".join(followed) == b"end\n"


async def _following(rt: DockerRuntime) -> bool:
    return bool(rt._log_streams)


async def test_abandoned_follow_is_closed(runtime: DockerRuntime) -> None:
    cid = await runtime.start(task("t-abandon", ["sh", "-c", "echo hello; sleep 300"]))
    stream = runtime.logs(cid, follow=True, tail=None)
    assert await asyncio.wait_for(stream.__anext__(), 10) == b"hello\n"
    await stream.aclose()  # type: ignore[attr-defined]
    assert not runtime._log_streams


async def test_exec_status_and_timeout(runtime: DockerRuntime) -> None:
    cid = await runtime.start(task("t-exec", ["sleep", "300"], env={"WHO": "warren"}))
    assert await runtime.exec(cid, ["sh", "-c", 'test "$WHO" = warren'], 10) == 0
    assert await runtime.exec(cid, ["sh", "-c", "exit 5"], 10) == 5
    started = time.monotonic()
    assert await runtime.exec(cid, ["sleep", "30"], 1.0) == -1
    assert time.monotonic() - started < 5
    assert await runtime.exec("0" * 64, ["true"], 5) == -1  # unknown container
    await runtime.stop(cid, 0)
    assert await runtime.exec(cid, ["true"], 5) == -1  # not running


async def test_version_names_the_engine(runtime: DockerRuntime, engine: Any) -> None:
    """What `warren worker start` announces ("✓ Runtime: docker (Docker Engine X)")."""
    assert await runtime.version() == f"Docker Engine {engine.version()['Version']}"
