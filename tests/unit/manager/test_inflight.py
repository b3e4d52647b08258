"""InFlight: proposals waiting for their answers, and waiting until none is left (bounded)."""

from __future__ import annotations

import asyncio
import time

import pytest

from warren.manager.inflight import InFlight


async def test_settled_returns_at_once_when_nothing_waits() -> None:
    start = time.monotonic()
    assert await InFlight().settled(5.0) is True
    assert time.monotonic() - start < 0.5


async def test_settled_returns_when_the_last_proposal_is_answered() -> None:
    inflight = InFlight()
    answers = [asyncio.Event(), asyncio.Event()]

    async def proposal(answered: asyncio.Event) -> None:
        with inflight.track():
            await answered.wait()

    tasks = [asyncio.create_task(proposal(e)) for e in answers]
    await asyncio.sleep(0)
    assert inflight.count == 2
    waiter = asyncio.create_task(inflight.settled(5.0))
    answers[0].set()
    await asyncio.sleep(0.05)
    assert not waiter.done(), "returned while a proposal still waited for its answer"
    answers[1].set()
    assert await asyncio.wait_for(waiter, 1.0) is True
    await asyncio.gather(*tasks)
    assert inflight.count == 0


async def test_settled_gives_up_after_its_timeout_and_a_failed_proposal_counts_as_answered() -> None:
    inflight = InFlight()
    release = asyncio.Event()

    async def failing() -> None:
        with inflight.track():
            await release.wait()
            raise RuntimeError("not committed")

    task = asyncio.create_task(failing())
    await asyncio.sleep(0)
    start = time.monotonic()
    assert await inflight.settled(0.05) is False
    assert 0.04 <= time.monotonic() - start < 1.0
    release.set()
    with pytest.raises(RuntimeError):
        await task
    assert inflight.count == 0
    assert await inflight.settled(5.0) is True
