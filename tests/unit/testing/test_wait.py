"""warren.testing.wait: `eventually` and its async twin, how the tests, the benches and the drill wait."""

from __future__ import annotations

import httpx
import pytest

from warren.testing.wait import NotYet, WaitTimeout, eventually, eventually_async


def test_eventually_returns_the_first_truthy_answer() -> None:
    answers: list[object] = [None, NotYet("1/2"), httpx.ConnectError("no"), KeyError("leader"), 0, "done"]

    def check() -> object:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    assert eventually(check, 5.0, "done", poll_s=0.0) == "done"
    assert answers == []


def test_eventually_times_out_naming_what_and_the_last_thing_seen() -> None:
    now = [0.0]

    def clock() -> float:
        now[0] += 1.0
        return now[0]

    def check() -> None:
        raise NotYet(f"seen at {now[0]:g}")

    expected = r"^timed out after 3.0s waiting for the leader; last seen: "
    with pytest.raises(WaitTimeout, match=expected) as info:
        eventually(check, 3.0, "the leader", poll_s=0.0, clock=clock, detail=lambda: "log tail")
    assert isinstance(info.value, AssertionError)  # a test waiting in vain fails, it does not err
    assert str(info.value.last) == "seen at 3"
    assert str(info.value).endswith("\nlog tail")


def test_an_exception_outside_not_yet_ends_the_wait_at_once() -> None:
    calls = []

    def check() -> None:
        calls.append(1)
        raise KeyError("boom")

    with pytest.raises(KeyError):
        eventually(check, 60.0, "x", poll_s=0.0, not_yet=(NotYet,))
    assert calls == [1]


async def test_eventually_async_awaits_a_coroutine_check_and_gives_the_same_answers() -> None:
    answers: list[object] = [None, NotYet("1/2"), KeyError("leader"), 0, "done"]

    async def check() -> object:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    assert await eventually_async(check, 5.0, "done", poll_s=0.0) == "done"
    assert answers == []
    assert await eventually_async(lambda: 7, 5.0, "a plain answer") == 7


async def test_eventually_async_times_out_with_eventuallys_message() -> None:
    now = [0.0]

    def clock() -> float:
        now[0] += 1.0
        return now[0]

    with pytest.raises(WaitTimeout, match=r"^timed out after 3.0s waiting for the leader; last seen: 0$"):
        await eventually_async(lambda: 0, 3.0, "the leader", poll_s=0.0, clock=clock)
    with pytest.raises(KeyError):
        await eventually_async(lambda: {}["x"], 60.0, "x", poll_s=0.0, not_yet=(NotYet,))
