"""`eventually` (and `eventually_async`, its twin for code on an event loop): the one way the harness and
the tests wait for a condition, by polling it (the API announces none of the conditions waited for: a
leader agreed on, a member ready, tasks running)."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar, cast

import httpx

T = TypeVar("T")

POLL_S = 0.05  # pause between two looks; seconds
# eventually_async's pause: what it looks at is mostly the loop's own tasks' work, which a look costs
# nothing to see, and states that pass quickly must not be missed; seconds
LOOP_POLL_S = 0.005


class NotYet(Exception):
    """A polled condition does not hold yet; the message says what was seen instead."""


# What a cluster still settling answers: NotYet, a manager down or unreachable (HTTP, OS errors), or an
# answer that lacks what is looked for yet (KeyError, ValueError).
UNSETTLED: tuple[type[BaseException], ...] = (NotYet, httpx.HTTPError, OSError, KeyError, ValueError)


class WaitTimeout(AssertionError):
    """A condition awaited by `eventually` did not hold in time. `last` is the last value or exception
    seen. An AssertionError, so that a test waiting in vain fails rather than errs."""

    def __init__(self, what: str, timeout_s: float, last: object, detail: str = "") -> None:
        extra = f"\n{detail}" if detail else ""
        super().__init__(f"timed out after {timeout_s}s waiting for {what}; last seen: {last!r}{extra}")
        self.what = what
        self.timeout_s = timeout_s
        self.last = last


class _Wait:
    """What both forms of `eventually` keep between two looks: the deadline and the last thing seen."""

    def __init__(
        self, timeout_s: float, what: str, detail: Callable[[], str] | None, clock: Callable[[], float]
    ) -> None:
        self.timeout_s, self.what, self.detail, self.clock = timeout_s, what, detail, clock
        self.deadline = clock() + timeout_s

    def give_up_if_late(self, last: object) -> None:
        """After a look that found "not yet": WaitTimeout once the deadline has passed."""
        if self.clock() >= self.deadline:
            detail = self.detail() if self.detail is not None else ""
            raise WaitTimeout(self.what, self.timeout_s, last, detail)


def eventually(
    check: Callable[[], T | None],
    timeout_s: float,
    what: str,
    *,
    poll_s: float = POLL_S,
    not_yet: tuple[type[BaseException], ...] = UNSETTLED,
    detail: Callable[[], str] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> T:
    """Call `check` every `poll_s` until it returns something truthy, and return that.

    A falsy answer, or one of the `not_yet` exceptions (by default UNSETTLED), means "not yet";
    any other exception ends the wait at once. After `timeout_s`, WaitTimeout names `what`, the last
    answer or exception seen and `detail()` (e.g. log tails) if given.
    """
    wait = _Wait(timeout_s, what, detail, clock)
    while True:
        last: object
        try:
            value = check()
        except not_yet as exc:
            value, last = None, exc
        else:
            last = value
        if value:
            return value
        wait.give_up_if_late(last)
        time.sleep(poll_s)


async def eventually_async(
    check: Callable[[], T | None | Awaitable[T | None]],
    timeout_s: float,
    what: str,
    *,
    poll_s: float = LOOP_POLL_S,
    not_yet: tuple[type[BaseException], ...] = UNSETTLED,
    detail: Callable[[], str] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> T:
    """`eventually` for a test on an event loop: the same arguments, answers and WaitTimeout, but it
    awaits `check()` when that is awaitable, and pauses (LOOP_POLL_S unless told) with asyncio.sleep,
    so the tasks whose work is waited for run meanwhile."""
    wait = _Wait(timeout_s, what, detail, clock)
    while True:
        last: object
        try:
            answer = check()
            value = cast("T | None", await answer if inspect.isawaitable(answer) else answer)
        except not_yet as exc:
            value, last = None, exc
        else:
            last = value
        if value:
            return value
        wait.give_up_if_late(last)
        await asyncio.sleep(poll_s)
