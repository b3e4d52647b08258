"""warren.testing.process: a Daemon (a plain Python child standing in for a Warren daemon) and the
environment of the daemons it starts."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import pytest

from warren.testing.process import CONFIG_DIR_ENV, Daemon, daemon_env, proc_state
from warren.testing.wait import eventually


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
