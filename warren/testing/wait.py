"""`eventually`: the one way the harness waits for a condition, by polling it (the API announces none
of the conditions waited for: a leader agreed on, a member ready, tasks running)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import httpx

T = TypeVar("T")

POLL_S = 0.05  # pause between two looks; seconds


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
    deadline = clock() + timeout_s
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
        if clock() >= deadline:
            raise WaitTimeout(what, timeout_s, last, detail() if detail is not None else "")
        time.sleep(poll_s)
