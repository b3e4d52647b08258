"""The drill's run without a cluster: which steps a failure skips, and the check that nothing was
restarted."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from warren.config import DrillSettings
from warren.drill.cluster import StepFailed, TaskRun
from warren.drill.interrupts import Interrupts
from warren.drill.report import StepResult
from warren.drill.steps import Drill, Outcome, _same_tasks
from warren.errors import ConfigError


class ScriptedDrill(Drill):
    """A Drill whose steps are given (no cluster is formed; clean-up has nothing to stop)."""

    def __init__(self, tmp: Path, failing: set[int]) -> None:
        self.seen: list[StepResult] = []
        super().__init__(DrillSettings(data_dir=str(tmp / "drill")), self.seen.append, Interrupts())
        self.failing = failing
        self.ran: list[int] = []

    def _steps(self) -> list[Callable[[], Outcome]]:
        return [self._make(n) for n in range(1, 7)]

    def _make(self, number: int) -> Callable[[], Outcome]:
        def step() -> Outcome:
            self.ran.append(number)
            if number in self.failing:
                raise StepFailed(f"step {number} broke")
            return Outcome(f"step {number} ok", {"n": number})

        return step


@pytest.mark.parametrize(("failing", "ran", "statuses"), [
    (set(), [1, 2, 3, 4, 5, 6], "pppppp"),
    ({1}, [1], "fsssss"),
    ({2}, [1, 2], "pfssss"),
    ({3}, [1, 2, 3, 4, 5, 6], "ppfppp"),  # services disturbed: writes, restart and rejoin still matter
    ({4}, [1, 2, 3, 4, 5, 6], "pppfpp"),
    ({5}, [1, 2, 3, 4, 5], "ppppfs"),  # no restart, no rejoin to check
    ({3, 4}, [1, 2, 3, 4, 5, 6], "ppffpp"),
])
def test_a_failed_step_skips_only_the_steps_it_makes_meaningless(
    tmp_path: Path, failing: set[int], ran: list[int], statuses: str
) -> None:
    drill = ScriptedDrill(tmp_path, failing)
    result = drill.run()
    assert drill.ran == ran
    assert "".join(s.status[0] for s in result.steps) == statuses
    assert drill.seen == list(result.steps)  # each reported as it happened
    assert result.passed is (not failing)
    skipped = [s for s in result.steps if s.status == "skipped"]
    assert all(s.message.startswith("step ") and s.message.endswith(" failed") for s in skipped)
    assert all(s.duration_s is None for s in skipped)
    assert (tmp_path / "drill").is_dir() and result.kept  # --data-dir is the operator's: kept


def test_a_data_dir_that_holds_something_is_refused(tmp_path: Path) -> None:
    (tmp_path / "something").write_text("x")
    drill = Drill(DrillSettings(data_dir=str(tmp_path)), lambda step: None, Interrupts())
    with pytest.raises(ConfigError, match="not an empty directory"):
        drill.prepare()


A = TaskRun("t-a", "svc.1", "proc-t-a", 100, 7)
B = TaskRun("t-b", "svc.2", "proc-t-b", 101, 7)


def test_the_same_tasks_in_the_same_processes_pass() -> None:
    _same_tasks([A, B], [B, A, TaskRun("t-c", "svc.3", "proc-t-c", 102, 9)], "process")


@pytest.mark.parametrize(("now", "words"), [
    ([A], "task svc.2 (t-b) no longer runs"),
    ([A, TaskRun("t-b", "svc.2", "proc-t-b", 555, 9)], "task svc.2 runs as pid 555, was pid 101"),
    ([A, TaskRun("t-b", "svc.2", "proc-t-b", None, None)], "task svc.2 runs as no live process"),
    ([A, TaskRun("t-b", "svc.2", "other", 101, 7)], "task svc.2 has a new container"),
])
def test_a_task_gone_or_restarted_fails_the_check(now: list[TaskRun], words: str) -> None:
    with pytest.raises(StepFailed, match=re.escape(words)):
        _same_tasks([A, B], now, "process")


def test_containers_are_compared_without_pids_under_docker() -> None:
    _same_tasks([TaskRun("t-a", "svc.1", "c1")], [TaskRun("t-a", "svc.1", "c1")], "docker")
