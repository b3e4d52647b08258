"""Managers of mixed Warren versions during a rolling upgrade: the leader refuses a command some manager
cannot apply, with a clear error, and apply never crashes on a command it does not know."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from warren.config import ManagerSettings
from warren.errors import ConflictError, UnavailableError
from warren.manager import versions
from warren.manager.consensus import Consensus, MemberMeta
from warren.manager.peer import PeerClient
from warren.manager.versions import VersionGate
from warren.spec.service import ServiceSpec, decode
from warren.store import apply as handlers
from warren.store import commands as c
from warren.store.machine import Store

T0 = 1_800_000_000.0
NEW_OP = c.CreateService.OP  # stands for a command a newer Warren added (version 2)


@pytest.fixture
def version_2(monkeypatch: pytest.MonkeyPatch) -> None:
    """This Warren applies command version 2, and `service.create` is a version-2 command."""
    monkeypatch.setattr(c, "COMMAND_VERSION", 2)
    monkeypatch.setattr(c, "SINCE", {NEW_OP: 2})


def new_cmd() -> c.Command:
    return c.CreateService("svc-1", "web", ServiceSpec(image="a"), T0)


def old_cmd() -> c.Command:
    return c.RemoveService("web", T0)


class Probes:
    def __init__(self, answers: dict[str, int | None]) -> None:
        self.answers = answers
        self.asked: list[str] = []

    async def __call__(self, addr: str) -> int | None:
        self.asked.append(addr)
        return self.answers[addr]


PEERS = [("manager-2", "10.0.0.2:4250"), ("manager-3", "10.0.0.3:4250")]


def test_ops_newer_than_the_base_are_listed_with_their_version() -> None:
    assert set(c.SINCE) <= set(c.COMMANDS)
    assert c.COMMAND_VERSION >= max([c.BASE_COMMAND_VERSION, *c.SINCE.values()])
    # The config ops came with mounts and configs in the spec: an older manager has no handler.
    assert c.required_version(c.CreateConfig("cfg-1", "app", "aGk=", 2, "ab" * 32, 1.0)) == c.MOUNTS_SINCE
    assert c.required_version(c.RemoveConfig("app", 1.0)) == c.MOUNTS_SINCE
    assert c.required_version(c.RemoveSecret("db", 1.0)) == c.BASE_COMMAND_VERSION
    # The volume ops likewise.
    assert c.required_version(c.NodeVolumes("w1", [c.VolumeRecord("data", "docker")], 1.0)) == c.MOUNTS_SINCE
    assert c.required_version(c.RemoveVolume("w1", "data", 1.0)) == c.MOUNTS_SINCE


def test_a_command_carrying_container_options_is_of_their_version() -> None:
    options = {"read_only": True}
    with_options = decode(ServiceSpec, {"image": "a", "container": options})
    assert c.required_version(c.CreateService("s", "web", ServiceSpec(image="a"), T0)) == 1
    assert c.required_version(c.CreateService("s", "web", with_options, T0)) == c.CONTAINER_OPTIONS_SINCE == 2
    assert c.required_version(c.UpdateService("web", {"image": "b"}, T0)) == 1
    # Even all off: an older manager refuses the key itself.
    assert c.required_version(c.UpdateService("web", {"container": {}}, T0)) == 2
    task = c.NewTask("t1", "s", 1, None, "pending", "", with_options.task_spec(), "d")
    assert c.required_version(c.CreateTasks([task], T0)) == 2
    plain = c.NewTask("t1", "s", 1, None, "pending", "", ServiceSpec(image="a").task_spec(), "d")
    assert c.required_version(c.CreateTasks([plain], T0)) == 1
    assert c.COMMAND_VERSION >= c.CONTAINER_OPTIONS_SINCE


async def test_a_base_version_command_asks_nobody(version_2: None) -> None:
    probes = Probes({})
    await VersionGate(lambda: PEERS, probes).check(old_cmd())
    assert probes.asked == []


async def test_a_newer_command_is_refused_while_a_manager_runs_an_older_warren(version_2: None) -> None:
    probes = Probes({"10.0.0.2:4250": 2, "10.0.0.3:4250": 1})
    gate = VersionGate(lambda: PEERS, probes)
    with pytest.raises(ConflictError) as info:
        await gate.check(new_cmd())
    message = str(info.value)
    assert "manager manager-3 runs an older Warren that cannot apply service.create" in message
    assert "upgrade every manager first" in message and "it applies up to 1" in message

    probes.answers["10.0.0.3:4250"] = 2  # manager-3 upgraded: the next attempt goes through at once
    await gate.check(new_cmd())
    asked = len(probes.asked)
    await gate.check(new_cmd())  # and the answers are remembered for a while
    assert len(probes.asked) == asked


async def test_a_newer_command_waits_for_a_manager_that_does_not_answer(version_2: None) -> None:
    gate = VersionGate(lambda: PEERS, Probes({"10.0.0.2:4250": 2, "10.0.0.3:4250": None}))
    with pytest.raises(UnavailableError, match="manager manager-3 did not say"):
        await gate.check(new_cmd())
    with pytest.raises(UnavailableError, match="manager-2"):  # no probe yet: deny by default
        await VersionGate(lambda: PEERS).check(new_cmd())
    await VersionGate(lambda: []).check(new_cmd())  # a lone manager decides for itself


async def test_remembered_answers_expire(version_2: None) -> None:
    now = [0.0]
    probes = Probes({"10.0.0.2:4250": 2, "10.0.0.3:4250": 2})
    gate = VersionGate(lambda: PEERS, probes, clock=lambda: now[0])
    await gate.check(new_cmd())
    probes.answers["10.0.0.3:4250"] = 1  # downgraded meanwhile
    now[0] += versions.VERSION_TTL_S
    with pytest.raises(ConflictError, match="manager-3"):
        await gate.check(new_cmd())


class FakeNode:
    """The Raft core as Consensus sees it: three voters, this one is 1."""

    def __init__(self) -> None:
        self.proposed: list[bytes] = []
        meta = {i: MemberMeta(f"manager-{i}", f"10.0.0.{i}:4250").encode() for i in (1, 2, 3)}
        self._metrics = {
            "id": 1, "role": "leader", "voters": [1, 2], "learners": [3], "leader_id": 1,
            "nodes": {i: {"addr": f"10.0.0.{i}:4251", "meta": m} for i, m in meta.items()},
        }  # fmt: skip

    def metrics(self) -> dict[str, Any]:
        return self._metrics

    async def propose(self, payload: bytes) -> tuple[int, bytes]:
        self.proposed.append(payload)
        return 1, orjson.dumps({"ok": None})


async def test_the_leader_refuses_before_anything_is_proposed(version_2: None) -> None:
    node = FakeNode()
    consensus = Consensus(node, None, ManagerSettings())  # type: ignore[arg-type]
    assert consensus.other_managers() == [("manager-2", "10.0.0.2:4250"), ("manager-3", "10.0.0.3:4250")]
    consensus.versions.probe = Probes({"10.0.0.2:4250": 2, "10.0.0.3:4250": 1})
    with pytest.raises(ConflictError, match="manager manager-3 runs an older Warren"):
        await consensus.propose(new_cmd())
    assert node.proposed == []
    await consensus.propose(old_cmd())  # what every manager applies still goes through
    assert len(node.proposed) == 1


async def test_a_manager_says_which_version_it_applies() -> None:
    bodies = {
        "new:1": (200, {"ready": True, "command_version": 3}),
        "old:1": (503, {"ready": False}),  # a Warren from before versions were advertised
        "odd:1": (200, {"command_version": "7"}),
        "html:1": (200, "<html>"),
        # A manager going down (its Raft core stopped on a full disk) answers with an error body: it did
        # not say, and is no older Warren (the chaos suite saw a config create refused with "upgrade").
        "dying:1": (503, {"error": "unavailable", "message": "raft stopped: raft log write failed"}),
    }

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.host == "down":
            raise httpx.ConnectError("refused")
        status, body = bodies[f"{request.url.host}:{request.url.port}"]
        if isinstance(body, str):
            return httpx.Response(status, text=body)
        return httpx.Response(status, json=body)

    peers = PeerClient(timeout_s=1, probe_timeout_s=1)
    await peers._client.aclose()
    peers._client = httpx.AsyncClient(transport=httpx.MockTransport(answer))
    addrs = ("new:1", "old:1", "odd:1", "html:1", "dying:1", "down:1")
    found = await asyncio.gather(*(peers.command_version(a) for a in addrs))
    assert found == [3, 1, None, None, None, None]
    await peers._client.aclose()


def test_apply_answers_an_unknown_command_with_an_error_and_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Store(str(tmp_path))
    store.restore(None)
    founder = c.ManagerRecord("m1", 1, "127.0.0.1:1", "127.0.0.1:2")
    unknown = orjson.dumps({"v": 1, "op": "service.teleport", "name": "web", "at": T0})
    future_codec = orjson.dumps({"v": 2, "op": "service.create", "name": "web"})
    # A command class this Warren decodes but has no handler for (a half-done upgrade of the code).
    monkeypatch.delitem(handlers._HANDLERS, c.RemoveService)
    answers = store.apply([
        (1, 1, c.encode(c.InitCluster("cluster-1", T0, founder))),
        (2, 1, unknown),
        (3, 1, future_codec),
        (4, 1, c.encode(c.RemoveService("web", T0))),
        (5, 1, c.encode(c.CreateService("svc-1", "web", ServiceSpec(image="a"), T0))),
    ])  # fmt: skip
    docs = [orjson.loads(a) for a in answers]
    assert "ok" in docs[0] and "ok" in docs[4]
    assert docs[1]["error"] == "invalid" and "unknown command 'service.teleport'" in docs[1]["message"]
    assert "newer Warren" in docs[1]["message"] and "upgrade it" in docs[1]["message"]
    assert "codec version 2" in docs[2]["message"]
    assert "cannot apply 'service.remove'" in docs[3]["message"]
    assert store.applied_index == 5
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert [r.getMessage().split(":")[0] for r in errors] == [
        "log entry 2 not applied", "log entry 3 not applied", "log entry 4 not applied"
    ]
    store.close()


def test_a_note_waits_for_no_silent_manager_but_stops_at_an_older_one() -> None:
    note = c.ClusterNote("leader", "elected", "manager-1", {"term": 2}, "elected", T0)
    assert c.required_version(note) == 5

    async def main() -> None:
        silent = VersionGate(lambda: PEERS, Probes({PEERS[0][1]: 5, PEERS[1][1]: None}))
        await silent.check(note)  # manager-3 does not answer (dead): the note goes through
        with pytest.raises(UnavailableError):  # a command that changes state still waits for it
            await silent.check(c.CreateConfig("cfg-1", "app", "aGk=", 2, "ab" * 32, 1.0))
        older = VersionGate(lambda: PEERS, Probes({PEERS[0][1]: 5, PEERS[1][1]: 4}))
        with pytest.raises(ConflictError, match="manager-3"):
            await older.check(note)

    asyncio.run(main())
