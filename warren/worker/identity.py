"""Who this worker is: `<data-dir>/node.json`, written when it joins and read on every restart.

The file holds the session secret, so it is written with mode 0600 into a data dir only the worker's
user can read; a restarted worker resumes with it and needs no token. Its other credential, the
certificate and private key it presents to managers, is kept beside it in `tls/`
(warren.pki.material), written at the join before node.json, so a worker with an identity always has
the certificate that goes with it.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field

import orjson

from warren.durable import read_if_exists, write_atomically
from warren.errors import CorruptStateError

FILE_NAME = "node.json"


@dataclass(frozen=True, slots=True)
class WorkerIdentity:
    name: str
    # Presented as `Authorization: Bearer <secret>`; never logged (kept out of repr).
    secret: str = field(repr=False)
    cluster_id: str
    # The managers this worker talks to ("host:port"), so a rerun without --manager finds them.
    managers: tuple[str, ...] = ()


def path(data_dir: str) -> str:
    return os.path.join(data_dir, FILE_NAME)


def load(data_dir: str) -> WorkerIdentity | None:
    """The identity in `data_dir`, or None for a data dir no worker has joined from."""
    raw = read_if_exists(path(data_dir))
    if raw is None:
        return None
    try:
        doc = orjson.loads(raw)
        if not isinstance(doc, dict):
            raise TypeError("not a JSON object")
        doc["managers"] = tuple(doc.get("managers") or ())
        identity = WorkerIdentity(**doc)
        if not (isinstance(identity.name, str) and isinstance(identity.secret, str) and identity.secret):
            raise TypeError("name and secret must be strings")
        return identity
    except (orjson.JSONDecodeError, TypeError) as exc:
        raise CorruptStateError(
            f"{path(data_dir)} is damaged ({exc}); remove the data dir and join this worker again with a "
            "new token (its old node can be removed with `warren node rm`)"
        ) from None


def save(data_dir: str, identity: WorkerIdentity) -> None:
    """Written atomically (owner-only): a crash leaves the old or the new file, never a torn one."""
    doc = dataclasses.asdict(identity)
    doc["managers"] = list(identity.managers)
    write_atomically(path(data_dir), orjson.dumps(doc, option=orjson.OPT_INDENT_2))
