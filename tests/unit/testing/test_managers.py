"""warren.testing.managers: a manager's command lines, and `form` founding a cluster and joining the rest."""

from __future__ import annotations

from pathlib import Path

from warren.testing.managers import ManagerDaemon, form
from warren.testing.process import WARREN


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
