"""Waiting for a change to a service to converge (warren.cli.converge judges), with its progress on
stderr: one line redrawn in place on a terminal, a plain line each time it changes otherwise. Stdout
keeps only the command's result, so scripts and `-o json` read the same as with --detach.

The wait polls the API (the service, then its tasks) every ClientSettings.wait_poll_s; it has no
overall bound (a rolling update takes as long as its policy makes it), but gives up once a task of the
new spec has waited wait_pending_s for a node with nothing else changing. Ctrl-C stops waiting only:
the change goes on (exit 130).
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable
from typing import TextIO

from warren.cli.converge import Change, Verdict, assess
from warren.cli.output import safe_line
from warren.client import ManagerClient
from warren.config import ClientSettings
from warren.errors import NotConvergedError
from warren.formats import format_duration

INTERRUPTED = 130  # the shell's status for a command stopped by SIGINT


class Progress:
    """Where the wait's lines go: redrawn in place (`live`, a terminal) or one per change."""

    def __init__(self, out: TextIO, name: str, *, live: bool) -> None:
        self.out, self.name, self.live = out, name, live
        self._last: str | None = None
        self._drawn = False

    def show(self, summary: str) -> None:
        line = safe_line(f"{self.name}: {summary}")
        if self.live:
            width = max(20, shutil.get_terminal_size().columns - 1)
            self.out.write("\r\x1b[K" + (line if len(line) <= width else line[: width - 3] + "..."))
            self._drawn = True
        elif line != self._last:
            self.out.write(line + "\n")
        self._last = line
        self.out.flush()

    def end(self, summary: str | None = None) -> None:
        """The last word: `summary` in place of the live line (kept), or the live line ended."""
        if summary is not None:
            self.show(summary)
        if self._drawn:
            self.out.write("\n")
            self.out.flush()
            self._drawn = False


def wait(client: ManagerClient, change: Change, *, settings: ClientSettings | None = None,
         out: TextIO | None = None, live: bool | None = None) -> int:
    """Wait for `change`; 0 once it converged, NotConvergedError once it failed or was given up on,
    130 on Ctrl-C."""
    settings = settings or client.settings
    out = out if out is not None else sys.stderr
    progress = Progress(out, change.name, live=out.isatty() if live is None else live)
    clock: Callable[[], float] = client.clock
    stuck: tuple[str, float] | None = None  # (summary, since) while a task waits for a node
    try:
        while True:
            service = client.get_service(change.name)
            verdict = assess(service, client.list_tasks(change.name), change, settings.wait_failures)
            if verdict.state == "converged":
                progress.end(f"converged: {verdict.summary}")
                return 0
            if verdict.state == "failed":
                progress.end()
                raise NotConvergedError(f"service {change.name} did not converge: {verdict.reason}")
            progress.show(verdict.summary)
            stuck = _stuck(verdict, stuck, clock())
            if stuck is not None and clock() - stuck[1] >= settings.wait_pending_s:
                progress.end()
                raise NotConvergedError(_given_up(change.name, verdict, settings.wait_pending_s))
            client.sleep(settings.wait_poll_s)
    except KeyboardInterrupt:
        progress.end()
        print(f"warren: stopped waiting; the change to service {change.name} goes on in the background "
              f"(see 'warren service ps {change.name}')", file=sys.stderr)
        return INTERRUPTED


def _stuck(verdict: Verdict, stuck: tuple[str, float] | None, now: float) -> tuple[str, float] | None:
    """Since when the wait has seen the same summary with a task waiting for a node (None: it has not)."""
    if not verdict.pending:
        return None
    if stuck is None or stuck[0] != verdict.summary:
        return (verdict.summary, now)
    return stuck


def _given_up(name: str, verdict: Verdict, after_s: float) -> str:
    why = verdict.reason or verdict.summary
    return (f"service {name} did not converge: gave up after {format_duration(after_s)}: {why}; the service "
            f"stays, and its tasks start once a node can run them (see 'warren service ps {name}')")
