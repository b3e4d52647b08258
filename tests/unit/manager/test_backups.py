"""A restore (`cluster init --restore`) copies configs as they are (they are not sealed), and reads a
backup of a Warren before configs, which has no such table."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

from tests.unit.manager.secrets_world import FOUNDER, World
from warren.manager.control.backups import Backups
from warren.store import queries

# What the Warren of schema 4 wrote with its content digest, as a backup is.
V4_BACKUP = Path(__file__).parents[2] / "fixtures" / "schema-v4" / "manager" / "snapshot.db"


def backups_of(world: World) -> Backups:
    consensus: Any = SimpleNamespace(store=world.store, propose=world.propose)
    return Backups(consensus)


async def test_configs_are_restored_without_the_old_data_key(tmp_path: Path) -> None:
    (tmp_path / "old").mkdir()
    (tmp_path / "new").mkdir()
    old = World(tmp_path / "old")
    await old.configs.create("app-conf-v1", b"listen 80\n")
    old.service("web", configs=[{"name": "app-conf-v1", "target": "/etc/app.conf"}])
    backup = tmp_path / "backup.db"
    old.store.backup_to(str(backup))
    new = World(tmp_path / "new")
    counts = await backups_of(new).restore(str(backup), b"another CA", FOUNDER)
    assert counts["configs"] == 1
    restored = new.configs.get("app-conf-v1")
    assert restored["data"] == old.configs.get("app-conf-v1")["data"] and restored["services"] == ["web"]


async def test_a_backup_from_before_configs_restores_without_them(tmp_path: Path) -> None:
    world = World(tmp_path)
    counts = await backups_of(world).restore(str(V4_BACKUP), b"another CA", FOUNDER)
    assert "configs" not in counts and counts["services"] == 2
    assert queries.configs(world.conn) == []
