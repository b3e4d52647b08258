"""Signals during the drill: SIGTERM is held while a child is spawned, and raised at once otherwise."""

from __future__ import annotations

import os
import signal

import pytest

from warren.drill.interrupts import Interrupts


def test_sigterm_raises_keyboard_interrupt_but_waits_for_a_deferred_block() -> None:
    interrupts = Interrupts()
    before = signal.getsignal(signal.SIGTERM)
    order = []
    with interrupts.active(), pytest.raises(KeyboardInterrupt, match="SIGTERM"):
        with interrupts.deferred():
            os.kill(os.getpid(), signal.SIGTERM)
            order.append("spawned and recorded")
            assert interrupts.pending
        order.append("never reached")
    assert order == ["spawned and recorded"]
    assert signal.getsignal(signal.SIGTERM) == before  # handlers restored


def test_sigterm_outside_a_deferred_block_raises_at_once() -> None:
    with Interrupts().active(), pytest.raises(KeyboardInterrupt, match="SIGTERM"):
        os.kill(os.getpid(), signal.SIGTERM)
        pytest.fail("SIGTERM did not interrupt")
