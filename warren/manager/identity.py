"""Who this manager is: `<data-dir>/node.json`, written once at init/join and read on every restart.

Rerunning `cluster init` or `manager join` on a data dir that has one resumes that manager.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

import orjson

from warren.durable import read_if_exists, write_atomically
from warren.errors import CorruptStateError

FILE_NAME = "node.json"


@dataclass(frozen=True, slots=True)
class Identity:
    name: str
    raft_id: int
    api_addr: str
    raft_addr: str
    # Set by `cluster init` (minted before bootstrap so a crashed init resumes with the same ID);
    # learned from the leader by `manager join`.
    cluster_id: str
    # True for the manager that founded the cluster (it proposes the cluster's first command).
    founder: bool = False
    # False while a join has not yet been promoted to voter; a rerun finishes it (needs --token).
    joined: bool = True
    # `cluster init --restore FILE`: the backup to import, until the import has committed.
    restore_from: str | None = None


def path(data_dir: str) -> str:
    return os.path.join(data_dir, FILE_NAME)


def load(data_dir: str) -> Identity | None:
    """The identity in `data_dir`, or None for a data dir no manager has used."""
    raw = read_if_exists(path(data_dir))
    if raw is None:
        return None
    try:
        doc = orjson.loads(raw)
        return Identity(**doc)
    except (orjson.JSONDecodeError, TypeError) as exc:
        raise CorruptStateError(
            f"{path(data_dir)} is damaged ({exc}); restore it from a backup of the data dir, or remove the "
            "data dir and join this manager again"
        ) from None


def save(data_dir: str, identity: Identity) -> None:
    """Written atomically: a crash leaves the old or the new file."""
    write_atomically(path(data_dir), orjson.dumps(dataclasses.asdict(identity), option=orjson.OPT_INDENT_2))
