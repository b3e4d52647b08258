"""A task's output on its way to the leader: the worker reads ahead only a bounded amount of it
(docs/security.md)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from warren.worker.logstream import coalesce

CHUNK = 64 * 1024
MIB = 1024 * 1024


async def test_the_worker_reads_ahead_at_most_a_few_mib_of_a_tasks_output() -> None:
    """Its runtime hands over 1 MiB pieces while the POSTs are stuck: the reader stops after about
    _READ_AHEAD_PIECES chunks (4 MiB), not 256 pieces of any size."""

    pulled = 0

    async def source() -> AsyncIterator[bytes]:
        nonlocal pulled
        for _ in range(100):
            pulled += 1
            yield b"a" * MIB

    pieces = coalesce(source(), CHUNK)
    first = await anext(pieces)  # then the "POST" hangs: nothing more is taken
    assert len(first) <= CHUNK
    for _ in range(50):  # every chance to read ahead: the behaviour under test is that it stops
        await asyncio.sleep(0)
    assert pulled <= 6, f"{pulled} MiB read ahead"
    rest = [first] + [p async for p in pieces]
    assert sum(map(len, rest)) == 100 * MIB and max(map(len, rest)) <= CHUNK
