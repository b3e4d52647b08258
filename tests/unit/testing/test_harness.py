"""warren.testing, the process harness of the tests, the benches and the drill: its wait, its daemons
(with a plain Python child standing in for a Warren daemon) and a manager's command lines."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import httpx
import pytest

from warren.testing.managers import ManagerDaemon, form
from warren.testing.process import CONFIG_DIR_ENV, WARREN, Daemon, daemon_env, proc_state
from warren.testing.wait import NotYet, WaitTimeout, eventually

# -- eventually ----------------------------------------------------------------------------------------


def test_eventually_returns_the_first_truthy_answer() -> None:
    answers: list[object] = [None, NotYet("1/2"), httpx.ConnectError("no"), KeyError("leader"), 0, "done"]

    def check() -> object:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    assert eventually(check, 5.0, "done", poll_s=0.0) == "done"
    assert answers == []


def test_eventually_times_out_naming_what_and_the_last_thing_seen() -> None:
    now = [0.0]

    def clock() -> float:
        now[0] += 1.0
        return now[0]

    def check() -> None:
        raise NotYet(f"seen at {now[0]:g}")

    expected = r"^timed out after 3.0s waiting for the leader; last seen: "
    with pytest.raises(WaitTimeout, match=expected) as info:
        eventually(check, 3.0, "the leader", poll_s=0.0, clock=clock, detail=lambda: "log tail")
    assert isinstance(info.value, AssertionError)  # a test waiting in vain fails, it does not err
    assert str(info.value.last) == "seen at 3"
    assert str(info.value).endswith("\nlog tail")


def test_an_exception_outside_not_yet_ends_the_wait_at_once() -> None:
    calls = []

    def check() -> None:
        calls.append(1)
        raise KeyError("boom")

    with pytest.raises(KeyError):
        eventually(check, 60.0, "x", poll_s=0.0, not_yet=(NotYet,))
    assert calls == [1]


# -- Daemon -------------------------------------------------------------------------------------------


def python_daemon(tmp_path: Path, code: str, **kwargs: object) -> Daemon:
    return Daemon("d", [sys.executable, "-c", code], tmp_path / "d.log", cwd=tmp_path, env=daemon_env(),
                  **kwargs)  # type: ignore[arg-type]


def test_a_daemon_keeps_each_incarnations_output_apart(tmp_path: Path) -> None:
    code = "import sys; print('Node ID: n-1)'); print('oops', file=sys.stderr)"
    d = Daemon("d", [sys.executable, "-c", code], tmp_path / "d.err", out_path=tmp_path / "d.out",
               cwd=tmp_path, env=daemon_env())
    d.start()
    assert d.wait_exit(30) == 0
    d.start()
    assert d.wait_exit(30) == 0
    assert d.output() == "Node ID: n-1)\n"  # the current incarnation's stdout only
    assert d.errors() == "oops\n"  # the header line before it is not the daemon's
    lines = d.all_output().splitlines()
    assert lines.count("oops") == 2 and sum(line.startswith("==== ") for line in lines) == 2
    assert d.name == "n-1" and d.has_name()
    assert len(d.pids) == 2 and d.pids[1] == d.pid


def test_a_daemon_runs_in_its_own_group_and_is_frozen_thawed_and_killed(tmp_path: Path) -> None:
    d = python_daemon(tmp_path, "import time; print('up', flush=True); time.sleep(60)")
    d.start()
    assert d.pid is not None
    eventually(lambda: d.output() == "up\n", 30, "the daemon to print")
    assert os.getpgid(d.pid) == d.pid != os.getpgid(0)
    d.freeze()
    assert d.stopped and proc_state(d.pid) == "T"
    d.thaw()
    assert not d.stopped
    d.kill()
    assert not d.alive and d.proc is not None and d.proc.returncode == -signal.SIGKILL
    assert "exited with status -9" in d.exit_note()


def test_stop_asks_with_sigterm_and_returns_the_status(tmp_path: Path) -> None:
    d = python_daemon(tmp_path, "import signal, sys, time\n"
                      "signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))\n"
                      "print('handler set', flush=True)\n"
                      "time.sleep(60)")
    d.start()
    eventually(lambda: d.output() == "handler set\n", 30, "the daemon to print")
    assert d.stop(30) == 0


def test_the_guard_is_held_around_each_spawn_and_tokens_stay_out_of_the_log(tmp_path: Path) -> None:
    entered: list[bool] = []

    class Guard:
        def __enter__(self) -> None:
            entered.append(True)

        def __exit__(self, *exc: object) -> None:
            return None

    d = Daemon("w", [sys.executable, "-c", "pass", "--token", "SWMTKN-1-secret", "--token=SWMTKN-1-other"],
               tmp_path / "w.log", cwd=tmp_path, env=daemon_env(), guard=Guard)
    d.start()
    assert d.wait_exit(30) == 0
    assert entered == [True]
    log = (tmp_path / "w.log").read_text()
    assert "SWMTKN" not in log and "--token *** --token=***" in log


def test_daemon_env_names_the_config_dir_and_drops_the_users_manager(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WARREN_MANAGER", "10.0.0.1:8080")
    monkeypatch.setenv("PYTHONPATH", "/elsewhere")
    env = daemon_env(tmp_path / "config", pythonpath=tmp_path)
    assert env[CONFIG_DIR_ENV] == str(tmp_path / "config")
    assert "WARREN_MANAGER" not in env and env["PYTHONUNBUFFERED"] == "1"
    assert env["PYTHONPATH"] == f"{tmp_path}{os.pathsep}/elsewhere"


# -- managers -----------------------------------------------------------------------------------------


class Recorded(ManagerDaemon):
    """A manager whose spawns are recorded instead of run."""

    spawned: list[list[str]]

    def start(self) -> None:
        self.spawned.append(list(self.argv))


def test_form_founds_on_the_first_and_joins_the_others_through_it(tmp_path: Path) -> None:
    managers = []
    for i in (1, 2, 3):
        m = Recorded(f"m{i}", "127.0.0.1", tmp_path / f"m{i}", tmp_path / f"m{i}.log", cwd=tmp_path,
                     env={}, ports=(8000 + i, 7000 + i, 9000 + i), flags=["--manager-only"])
        m.spawned = []
        managers.append(m)
    tokens: list[str] = []
    joined: list[str] = []

    def token(first: Recorded) -> str:
        tokens.append(first.label)
        return "SWMTKN-1-x"

    assert form(3, iter(managers).__next__, token, lambda m: joined.append(m.label)) is managers[0]
    assert joined == ["m1", "m2", "m3"] and tokens == ["m1"]  # one token, asked of the founder
    assert managers[0].spawned == [[*WARREN, "cluster", "init", "--listen-addr", "127.0.0.1:8001",
                                    "--raft-addr", "127.0.0.1:7001", "--metrics-addr", "127.0.0.1:9001",
                                    "--data-dir", str(tmp_path / "m1"), "--manager-only"]]
    assert managers[2].spawned[0][:9] == [*WARREN, "manager", "join", "--token", "SWMTKN-1-x", "--manager",
                                          "127.0.0.1:8001"]
    managers[0].init(restore="backup.tar.gz", restore_key="ca.key")
    assert managers[0].spawned[-1][-4:] == ["--restore", "backup.tar.gz", "--restore-key", "ca.key"]
