"""The state-machine bridge (`drive`), both implementations, against an in-memory fake node."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections import deque
from collections.abc import Callable, Coroutine, Iterable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from warren import _raft_py

REPO = Path(__file__).resolve().parents[2]

Drive = Callable[[Any, Any], Coroutine[Any, Any, None]]
Event = tuple[Any, ...]


@pytest.fixture(params=["python", "cython"])
def drive(request: pytest.FixtureRequest) -> Drive:
    """Each test runs against both implementations; the compiled one is skipped if not built."""
    if request.param == "python":
        return _raft_py.drive
    compiled: Drive = request.getfixturevalue("compiled_bridge").drive
    return compiled


# -- fakes ------------------------------------------------------------------------------------------


class FakeWork:
    """A work item as the core hands it out; records how the bridge settled it, in a shared log."""

    kind = ""

    def __init__(self, log: list[Event]) -> None:
        self.log = log
        self.completed: tuple[Any, ...] | None = None
        self.failed: str | None = None

    def _settle(self, event: Event) -> None:
        assert self.completed is None and self.failed is None, "work item settled twice"
        self.log.append(event)

    def fail(self, message: str) -> None:
        self._settle(("fail", self.kind, message))
        self.failed = message


class FakeApply(FakeWork):
    kind = "apply"

    def __init__(self, log: list[Event], entries: list[tuple[int, int, bytes]]) -> None:
        super().__init__(log)
        self.entries = entries

    def complete(self, responses: list[bytes]) -> None:  # exactly one argument, like ApplyBatch
        self._settle(("complete", "apply", list(responses)))
        self.completed = (responses,)


class FakeSnapshot(FakeWork):
    kind = "snapshot"

    def __init__(self, log: list[Event], path: str) -> None:
        super().__init__(log)
        self.path = path

    def complete(self) -> None:  # no argument, like BuildSnapshot
        self._settle(("complete", "snapshot"))
        self.completed = ()


class FakeRestore(FakeWork):
    kind = "restore"

    def __init__(self, log: list[Event], path: str | None) -> None:
        super().__init__(log)
        self.path = path

    def complete(self) -> None:  # no argument, like RestoreSnapshot
        self._settle(("complete", "restore"))
        self.completed = ()


class FakeNode:
    """Hands out queued items (None included) in order, then None forever: a node that shut down."""

    def __init__(self, items: Iterable[FakeWork | None]) -> None:
        self.queue: deque[FakeWork | None] = deque(items)
        self.pulls = 0

    async def next_work(self) -> FakeWork | None:
        self.pulls += 1
        await asyncio.sleep(0)  # a real await, as with the core
        return self.queue.popleft() if self.queue else None


class KVStateMachine:
    """A tiny deterministic state machine: payload b"key=value" sets key, responds with the old value."""

    def __init__(self, log: list[Event]) -> None:
        self.log = log
        self.data: dict[str, str] = {"stale": "state"}  # restore must replace this
        self.applied_index = 0
        self.fail_on: str | None = None

    def apply(self, entries: list[tuple[int, int, bytes]]) -> list[bytes]:
        self.log.append(("apply", [index for index, _, _ in entries]))
        if self.fail_on == "apply":
            raise RuntimeError("disk on fire")
        responses = []
        for index, _term, payload in entries:
            assert index == self.applied_index + 1, "entries must arrive in log order, none skipped"
            key, _, value = payload.decode().partition("=")
            responses.append(self.data.get(key, "").encode())
            self.data[key] = value
            self.applied_index = index
        return responses

    def snapshot(self, path: str) -> None:
        self.log.append(("snapshot", path))
        if self.fail_on == "snapshot":
            raise OSError("no space left on device")
        Path(path).write_text(json.dumps({"data": self.data, "index": self.applied_index}))

    def restore(self, path: str | None) -> None:
        self.log.append(("restore", path))
        if self.fail_on == "restore":
            raise ValueError("not a snapshot")
        if path is None:
            self.data, self.applied_index = {}, 0
        else:
            state = json.loads(Path(path).read_text())
            self.data, self.applied_index = state["data"], state["index"]


def batch(log: list[Event], first: int, payloads: list[bytes], term: int = 1) -> FakeApply:
    return FakeApply(log, [(first + i, term, p) for i, p in enumerate(payloads)])


# -- tests ------------------------------------------------------------------------------------------


async def test_restore_completes_before_the_first_apply(drive: Drive) -> None:
    log: list[Event] = []
    node = FakeNode([FakeRestore(log, None), batch(log, 1, [b"a=1", b"b=2"])])
    sm = KVStateMachine(log)

    await drive(node, sm)

    assert log == [
        ("restore", None),
        ("complete", "restore"),
        ("apply", [1, 2]),
        ("complete", "apply", [b"", b""]),
    ]
    assert sm.data == {"a": "1", "b": "2"}  # the stale state was replaced, not merged


async def test_responses_are_delivered_per_entry_in_order(drive: Drive) -> None:
    log: list[Event] = []
    first = batch(log, 1, [b"x=1", b"x=2", b"y=9"])
    second = batch(log, 4, [b"x=3"], term=2)
    node = FakeNode([FakeRestore(log, None), first, second])

    await drive(node, KVStateMachine(log))

    assert first.completed == ([b"", b"1", b""],)
    assert second.completed == ([b"2"],)
    assert [e for e in log if e[0] == "complete"] == [
        ("complete", "restore"),
        ("complete", "apply", [b"", b"1", b""]),
        ("complete", "apply", [b"2"]),
    ]


PAYLOAD = st.tuples(st.sampled_from("abc"), st.integers(0, 99)).map(lambda kv: f"{kv[0]}={kv[1]}".encode())


# The drive fixture is a stateless function, safe to share across examples.
@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.lists(PAYLOAD, min_size=1, max_size=5), max_size=8))
async def test_every_entry_applied_once_in_order(drive: Drive, batches: list[list[bytes]]) -> None:
    log: list[Event] = []
    items: list[FakeApply] = []
    index = 1
    for payloads in batches:
        items.append(batch(log, index, payloads))
        index += len(payloads)
    sm = KVStateMachine(log)

    await drive(FakeNode([FakeRestore(log, None), *items]), sm)

    applied = [i for event in log if event[0] == "apply" for i in event[1]]
    assert applied == list(range(1, index))
    model: dict[str, str] = {}
    for item in items:
        expected = []
        for _, _, payload in item.entries:
            key, _, value = payload.decode().partition("=")
            expected.append(model.get(key, "").encode())
            model[key] = value
        assert item.completed == (expected,) and item.failed is None
    assert sm.data == model


async def test_snapshot_then_restore_rebuilds_the_same_state(drive: Drive, tmp_path: Path) -> None:
    snap = str(tmp_path / "snap-3.json")
    log: list[Event] = []
    before = KVStateMachine(log)
    await drive(
        FakeNode([FakeRestore(log, None), batch(log, 1, [b"a=1", b"b=2", b"a=3"]), FakeSnapshot(log, snap)]),
        before,
    )
    assert ("complete", "snapshot") in log

    # A restart: snapshot plus the log after it.
    after = KVStateMachine([])
    restart_log: list[Event] = []
    await drive(FakeNode([FakeRestore(restart_log, snap), batch(restart_log, 4, [b"c=4"])]), after)
    assert after.data == {"a": "3", "b": "2", "c": "4"}
    assert after.applied_index == 4


@pytest.mark.parametrize(
    ("kind", "error", "message"),
    [
        ("apply", RuntimeError, "RuntimeError: disk on fire"),
        ("snapshot", OSError, "OSError: no space left on device"),
        ("restore", ValueError, "ValueError: not a snapshot"),
    ],
)
async def test_state_machine_failure_fails_the_item_and_stops(
    drive: Drive, kind: str, error: type[Exception], message: str, tmp_path: Path
) -> None:
    log: list[Event] = []
    items: dict[str, FakeWork] = {
        "restore": FakeRestore(log, None),
        "apply": batch(log, 1, [b"a=1"]),
        "snapshot": FakeSnapshot(log, str(tmp_path / "snap")),
    }
    later = batch(log, 2, [b"b=2"])
    node = FakeNode([*items.values(), later])
    sm = KVStateMachine(log)
    sm.fail_on = kind

    with pytest.raises(error):
        await drive(node, sm)

    failed = items[kind]
    assert failed.failed == message and failed.completed is None
    assert log[-1] == ("fail", kind, message)
    # Stopped: nothing after the failed item was pulled or applied.
    assert later in node.queue and later.completed is None and later.failed is None
    assert ("apply", [2]) not in log


async def test_wrong_number_of_responses_fails_the_batch(drive: Drive) -> None:
    log: list[Event] = []
    work = batch(log, 1, [b"a=1", b"b=2"])

    class ShortChanging(KVStateMachine):
        def apply(self, entries: list[tuple[int, int, bytes]]) -> list[bytes]:
            return super().apply(entries)[:1]

    with pytest.raises(ValueError, match="1 responses for 2 entries"):
        await drive(FakeNode([work]), ShortChanging(log))
    assert work.failed == "ValueError: state machine returned 1 responses for 2 entries"
    assert work.completed is None


async def test_returns_when_the_node_shuts_down(drive: Drive) -> None:
    log: list[Event] = []
    after_shutdown = batch(log, 1, [b"a=1"])
    node = FakeNode([FakeRestore(log, None), None, after_shutdown])

    assert await drive(node, KVStateMachine(log)) is None

    assert node.pulls == 2
    assert list(node.queue) == [after_shutdown]
    assert not [e for e in log if e[0] == "apply"]


async def test_empty_node_returns_at_once(drive: Drive) -> None:
    node = FakeNode([])
    await drive(node, KVStateMachine([]))
    assert node.pulls == 1


def _implementation_picked(no_extensions: str | None, prelude: str = "") -> str:
    env = {k: v for k, v in os.environ.items() if k != "WARREN_NO_EXTENSIONS"}
    if no_extensions is not None:
        env["WARREN_NO_EXTENSIONS"] = no_extensions
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            prelude + "from warren.raft_bridge import IMPLEMENTATION; print(IMPLEMENTATION)",
        ],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip()


def test_no_extensions_env_selects_the_python_twin() -> None:
    assert _implementation_picked("1") == "python"


def test_compiled_bridge_is_picked_when_present(compiled_bridge: ModuleType) -> None:
    assert _implementation_picked(None) == "cython"
    assert _implementation_picked("") == "cython"  # set but empty does not disable


def test_the_pure_source_under_the_compiled_name_is_not_taken_for_compiled() -> None:
    # warren/_raft.py, the symlink setup.py compiles, is importable as warren._raft where nothing was
    # compiled (a source checkout, the pure wheel): it is the pure bridge, and says so.
    pure_as_compiled = (
        "import sys, importlib.util; "
        "spec = importlib.util.spec_from_file_location('warren._raft', 'warren/_raft.py'); "
        "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m); "
        "sys.modules['warren._raft'] = m; "
    )
    assert _implementation_picked(None, pure_as_compiled) == "python"


def test_the_compiled_module_is_the_one_source_compiled(compiled_bridge: ModuleType) -> None:
    assert compiled_bridge.COMPILED is True
    assert _raft_py.COMPILED is False
    assert (REPO / "warren" / "_raft.py").resolve() == (REPO / "warren" / "_raft_py.py").resolve()
