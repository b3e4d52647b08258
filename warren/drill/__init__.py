"""`warren drill`: the seed's "Test Failover Regularly" checklist as one command, on this machine.

The drill forms a throwaway cluster of its own on loopback (managers, one worker, a service), kills
its leader, and checks that a new leader is elected, that the service's tasks keep running untouched,
that writes succeed, and that the failed manager, restarted, rejoins as a caught-up follower; then it
stops everything it started. It never touches another cluster.

    interrupts.py  Ctrl-C and SIGTERM handling (the daemons are warren.testing's)
    cluster.py     forming, probing and stopping the drill's cluster
    cleanup.py     the task processes and containers left behind, stopped
    steps.py       the six steps
    report.py      step results, the verdict, the JSON document (pure)
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from warren.config import DrillSettings
from warren.drill.interrupts import Interrupts
from warren.drill.report import DrillResult, StepResult
from warren.drill.steps import Drill
from warren.errors import UnavailableError

__all__ = ["DrillResult", "StepResult", "run_drill"]


def run_drill(settings: DrillSettings, on_step: Callable[[StepResult], None],
              on_start: Callable[[Path], None] | None = None) -> DrillResult:
    """Run the drill; `on_start(data dir)` once its directory exists, `on_step` after each step.

    Ctrl-C or SIGTERM (in the main thread) stops every process the drill started, removes its data
    unless kept, and then raises KeyboardInterrupt. ConfigError for impossible settings,
    UnavailableError when the docker runtime is asked for and no engine answers.
    """
    settings.validate()
    if settings.runtime == "docker":
        from warren.runtime import docker_available

        if not docker_available():
            raise UnavailableError("runtime docker: no Docker Engine answers (is it running, and may this "
                                   "user use its socket?); the process runtime needs none")
    with Interrupts().active() as interrupts:
        return Drill(settings, on_step, interrupts).run(on_start)
