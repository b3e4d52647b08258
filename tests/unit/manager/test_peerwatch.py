"""The leader's reachability notes (warren.manager.peerwatch): a manager silent for longer than the
bound is noted unreachable, then reachable again, at most once per interval per manager; nothing when
not leading."""

from __future__ import annotations

from typing import Any

from warren.config import EventSettings
from warren.manager.consensus import MemberMeta
from warren.manager.peerwatch import PeerWatch


class World:
    def __init__(self) -> None:
        self.now = 100.0
        self.role = "leader"
        self.contact: dict[int, float | None] = {2: 0.1, 3: 0.2}

    def metrics(self) -> Any:
        return {
            "id": 1,
            "role": self.role,
            "term": 7,
            "voters": [1, 2, 3],
            "learners": [],
            "peers": {i: {"match_index": 1, "last_contact_s": c} for i, c in self.contact.items()},
            "nodes": {i: {"addr": "", "meta": MemberMeta(f"m{i}", f"10.0.0.{i}:1").encode()}
                      for i in (1, 2, 3)},
        }


async def _never(_: Any) -> None:
    raise AssertionError("check() only returns notes")


def make(world: World) -> PeerWatch:
    settings = EventSettings(unreachable_after_s=3.0, note_interval_s=30.0)
    return PeerWatch(world.metrics, _never, settings, clock=lambda: world.now, wall=lambda: 5.0)


def test_a_silent_manager_is_noted_unreachable_then_reachable() -> None:
    world = World()
    watch = make(world)
    assert watch.check() == []
    world.contact[3] = 4.0
    (note,) = watch.check()
    assert (note.type, note.action, note.actor) == ("manager", "unreachable", "m3")
    assert note.attributes == {"raft_id": 3, "last_contact_s": 4.0, "term": 7} and note.at == 5.0
    assert "m3 is unreachable" in note.message
    assert watch.check() == []  # said once
    world.now += 31
    world.contact[3] = 0.1
    (note,) = watch.check()
    assert (note.action, note.actor) == ("reachable", "m3")


def test_a_manager_never_heard_from_is_unreachable() -> None:
    world = World()
    world.contact[2] = None
    (note,) = make(world).check()
    assert (note.action, note.actor, note.attributes["last_contact_s"]) == ("unreachable", "m2", None)


def test_a_flapping_link_gets_one_note_per_interval() -> None:
    world = World()
    watch = make(world)
    notes = []
    for step in range(60):  # flaps every second for a minute
        world.now += 1
        world.contact[2] = 5.0 if step % 2 == 0 else 0.1
        notes += watch.check()
    assert len(notes) <= 3, [(n.action, n.at) for n in notes]
    assert notes[0].action == "unreachable"


def test_a_follower_notes_nothing() -> None:
    world = World()
    world.role = "follower"
    world.contact[2] = None
    assert make(world).check() == []
