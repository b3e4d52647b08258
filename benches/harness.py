"""One harness for every scenario: a time budget each, failures recorded, cleanup guaranteed.

A scenario is a function of its work directory returning its result dict (`status`, `config`,
`results`, `rows`). `run_scenario` gives it a wall-clock budget enforced by SIGALRM: when the budget
runs out, `ScenarioDeadline` (a BaseException, so no `except Exception` in a scenario swallows it) is
raised in the main thread wherever the scenario is, and its `finally` blocks kill what it started,
exactly as for Ctrl-C or a SIGTERM of the run (`sigterm_raises`). A scenario that fails or runs out of
time is recorded with the reason and the run goes on: benchmarks measure, they never assert.

While a scenario runs, `WARREN_CONFIG_DIR` points into its work dir (`own_config_dir`): the admin
certificates `cluster init` writes for the clusters it forms, and that the CLI and the API clients find
there, never land in the user's ~/.config, and go when the work dir is removed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger("benches")

Runner = Callable[[Path], dict[str, Any]]

CONFIG_DIR_ENV = "WARREN_CONFIG_DIR"  # read by warren.pki.userconfig at every call
CONFIG_DIR_NAME = "warren-config"  # in a scenario's work dir


class ScenarioDeadline(BaseException):
    """A scenario ran past its budget (raised from SIGALRM in the main thread)."""


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    measures: str  # one line: what it measures, from which event to which
    budget_s: float  # the harness stops it after this long; seconds
    run: Runner


@contextlib.contextmanager
def deadline(seconds: float, name: str) -> Iterator[None]:
    """Raise ScenarioDeadline in the main thread after `seconds` (no-op off the main thread)."""
    if threading.current_thread() is not threading.main_thread() or seconds <= 0:
        yield
        return

    def expire(signum: int, frame: Any) -> None:
        raise ScenarioDeadline(f"scenario {name} ran past its {seconds:g} s budget")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@contextlib.contextmanager
def own_config_dir(path: Path) -> Iterator[None]:
    """`WARREN_CONFIG_DIR` = `path` while inside (for this process and every process it starts), then
    as it was."""
    previous = os.environ.get(CONFIG_DIR_ENV)
    os.environ[CONFIG_DIR_ENV] = str(path)
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(CONFIG_DIR_ENV, None)
        else:
            os.environ[CONFIG_DIR_ENV] = previous


def run_scenario(scenario: Scenario, work_dir: Path, budget_s: float | None = None) -> dict[str, Any]:
    """The scenario's result, with `wall_s` and `budget_s`; an error result if it raised or timed out.
    KeyboardInterrupt (Ctrl-C, SIGTERM) still stops the whole run, after the scenario cleaned up."""
    budget = scenario.budget_s if budget_s is None else budget_s
    log.info("scenario %s: starting (budget %.0f s): %s", scenario.name, budget, scenario.measures)
    t0 = time.monotonic()
    scenario_dir = work_dir / scenario.name
    try:
        with own_config_dir(scenario_dir / CONFIG_DIR_NAME), deadline(budget, scenario.name):
            result = scenario.run(scenario_dir)
    except ScenarioDeadline as exc:
        log.error("%s", exc)
        result = {"status": "error", "error": str(exc), "rows": []}
    except Exception as exc:  # scenario boundary: record the failure, go on with the next one
        log.exception("scenario %s failed", scenario.name)
        error = f"{type(exc).__name__}: {exc}"
        result = {"status": "error", "error": error, "traceback": traceback.format_exc()}
    result["measures"] = scenario.measures
    result["budget_s"] = budget
    result["wall_s"] = time.monotonic() - t0
    log.info("scenario %s: %s in %.1fs", scenario.name, result.get("status"), result["wall_s"])
    return result
