"""The drill's logic without a cluster: its settings and flags, which steps a failure skips, the check
that nothing was restarted, polling, and signals held while a child is spawned."""

from __future__ import annotations

import os
import re
import signal
from collections.abc import Callable
from pathlib import Path

import pytest

from warren.cli.main import build_parser, main
from warren.config import DrillSettings
from warren.drill.cluster import StepFailed, TaskRun, wait_until
from warren.drill.interrupts import Interrupts
from warren.drill.report import StepResult
from warren.drill.steps import Drill, Outcome, _same_tasks
from warren.errors import ConfigError
from warren.testing.wait import NotYet

# -- settings and flags --------------------------------------------------------------------------------


def test_default_settings_are_valid_and_run_processes() -> None:
    settings = DrillSettings()
    settings.validate()
    assert (settings.managers, settings.runtime, settings.kill) == (3, "process", "sigkill")
    assert DrillSettings(runtime="docker").service_image == "warren-busybox:latest"
    assert DrillSettings(runtime="docker", image="busybox:1").service_image == "busybox:1"


@pytest.mark.parametrize(("fields", "words"), [
    ({"managers": 4}, "managers must be 3 or 5"),
    ({"kill": "sighup"}, "kill must be one of sigkill, sigterm, sigstop"),
    ({"image": "busybox"}, "image applies to the docker runtime only"),
    ({"step_timeout_s": 0.0}, "step_timeout_s must be greater than 0"),
    ({"replicas": 3, "scaled_replicas": 3}, "must be at least 1 and less than scaled_replicas"),
])
def test_impossible_settings_are_refused(fields: dict[str, object], words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        DrillSettings(**fields).validate()  # type: ignore[arg-type]


def settings_from(*argv: str) -> DrillSettings:
    from warren.cli.drill_cmds import build_settings

    return build_settings(build_parser().parse_args(["drill", *argv]))


def test_flags_not_given_leave_the_defaults() -> None:
    assert settings_from() == DrillSettings()


def test_flags_become_settings() -> None:
    got = settings_from("--managers", "5", "--runtime", "docker", "--image", "img:1", "--kill", "sigstop",
                        "--step-timeout", "1m", "--data-dir", "/tmp/d", "--keep")
    assert got == DrillSettings(managers=5, runtime="docker", image="img:1", kill="sigstop",
                                step_timeout_s=60.0, data_dir="/tmp/d", keep=True)


@pytest.mark.parametrize(("argv", "words"), [
    (["--image", "busybox"], "--image applies to --runtime docker only"),
    (["--managers", "4"], "invalid choice: 4"),
    (["--step-timeout", "5"], "invalid duration '5'"),
    (["--step-timeout", "0s"], "--step-timeout must be greater than 0"),
])
def test_bad_flags_exit_2_with_one_line(
    argv: list[str], words: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["drill", *argv]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and words in err, err


# -- the run: which steps a failure skips ------------------------------------------------------------


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


# -- nothing was restarted ----------------------------------------------------------------------------

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


# -- polling ------------------------------------------------------------------------------------------


def test_wait_until_returns_once_the_condition_holds() -> None:
    answers: list[str | Exception] = [NotYet("1/2 running"), NotYet("1/2 running"), "done"]

    def check() -> str:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    assert wait_until(check, 5.0, "service", 0.001) == "done"


def test_wait_until_times_out_with_the_last_thing_seen() -> None:
    now = [0.0]

    def clock() -> float:
        now[0] += 1.0
        return now[0]

    def check() -> str:
        raise NotYet(f"1/2 running at {now[0]:g}")

    with pytest.raises(StepFailed, match=r"^no service 2/2 running within 3.0 s: 1/2 running at 3$"):
        wait_until(check, 3.0, "service 2/2 running", 0.0, clock)


def test_a_step_failure_ends_the_wait_at_once() -> None:
    calls = []

    def check() -> None:
        calls.append(1)
        raise StepFailed("manager1 exited with status 1")

    with pytest.raises(StepFailed, match="manager1 exited"):
        wait_until(check, 60.0, "manager", 0.0)
    assert calls == [1]


# -- signals ------------------------------------------------------------------------------------------


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
