"""Any sequence of commands gives every manager the same state and the same answers, however it got
there: applied straight through, or through snapshots installed on a follower and restarts that rebuild
the state from the latest snapshot plus the log, as the Raft core does (rust/src/state_machine.rs: the
first work item after every start is a restore; a follower installs a leader's snapshot by a restore).
And replay is deterministic: the same log, grouped into apply calls differently, gives byte-equal
answers and the same rows.

The default profile keeps the file near 20 s on a shared 2-core machine; WARREN_HYPOTHESIS_PROFILE=long
(`make stateful-long`) runs it for many minutes.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import tempfile
from pathlib import Path
from typing import Any

import orjson
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from tests.unit.store.strategies import FOUNDER, HASHES, T0, WORKERS, batches
from warren.store import commands as c
from warren.store import schema
from warren.store.machine import Store

PROFILES: dict[str, dict[str, Any]] = {
    "default": {"max_examples": 60, "stateful_step_count": 30},
    "long": {"max_examples": 5000, "stateful_step_count": 80},
}
PROFILE = os.environ.get("WARREN_HYPOTHESIS_PROFILE", "default")
# The stores' files: in memory where there is a tmpfs, so that the fsyncs of snapshots and restores
# (real, and the same code) cost nothing on a busy disk.
SCRATCH = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None

Entries = list[tuple[int, int, bytes]]


def canonical(store: Store) -> dict[str, Any]:
    """Everything replicated, in a fixed order: every table's rows with their rowids (a backup keeps
    them, and the content digest reads rows in rowid order), the schema, and the applied index. Not
    the meta table's other rows: a restored file carries the content digest its snapshot was given."""
    conn = store.conn
    state: dict[str, Any] = {
        "schema": sorted(
            tuple(r) for r in conn.execute("SELECT type, name, tbl_name, sql FROM sqlite_master")
        ),
        "migrations": [tuple(r) for r in conn.execute("SELECT * FROM schema_migrations ORDER BY version")],
        "applied_index": store.applied_index,
        "meta_applied_index": _meta(conn, "applied_index"),
        "schema_version": _meta(conn, "schema_version"),
        "digest": schema.content_digest(conn),
    }
    for table in schema.TABLES:
        state[table] = [tuple(r) for r in conn.execute(f"SELECT rowid, * FROM {table} ORDER BY rowid")]
    return state


def _meta(conn: sqlite3.Connection, key: str) -> str | None:
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return None if row is None else str(row[0])


def fresh(path: Path) -> Store:
    """A state machine as the core starts one: a new Store, then the first work item, a restore."""
    store = Store(str(path))
    store.restore(None)
    return store


class Replicas(RuleBasedStateMachine):
    """`straight` applies every batch as it comes; `hopping` applies the same entries one Raft entry
    per apply call, and now and then is rebuilt from its latest snapshot plus the log since, on a new
    follower or in its own directory after a restart."""

    def __init__(self) -> None:
        super().__init__()
        self.tmp = Path(tempfile.mkdtemp(prefix="warren-stateful-", dir=SCRATCH))
        self.dirs = 0
        self.straight = fresh(self.new_dir())
        self.hopping_dir = self.new_dir()
        self.hopping = fresh(self.hopping_dir)
        self.index = 0
        self.term = 1
        # Every apply call of the straight store, with the answers it gave (the reference).
        self.calls: list[tuple[Entries, list[bytes]]] = []
        # The core keeps its latest snapshot and the log after it: (file, entries covered).
        self.snapshot: tuple[Path, int] | None = None
        self.snapshots = 0

    def new_dir(self) -> Path:
        self.dirs += 1
        path = self.tmp / f"node-{self.dirs}"
        path.mkdir()
        return path

    # -- the log ----------------------------------------------------------------------------------------

    def entries(self, batch: list[list[bytes]]) -> Entries:
        out: Entries = []
        for payloads in batch:
            self.index += 1
            out.extend((self.index, self.term, p) for p in payloads)
        return out

    def apply(self, entries: Entries) -> None:
        answers = self.straight.apply(entries)
        assert len(answers) == len(entries)
        self.calls.append((entries, answers))
        for (_, _, payload), answer in zip(entries, answers, strict=True):
            event(f"{_op(payload)}: {_outcome(answer)}")
        got: list[bytes] = []
        for one in split_by_index(entries):
            got.extend(self.hopping.apply(one))
        assert got == answers, _diff(entries, answers, got)

    @initialize(founded=st.booleans())
    def found(self, founded: bool) -> None:
        """Most runs start from a founded cluster with workers, so that later commands meet a state."""
        if not founded:
            return
        cmds: list[c.Command] = [
            c.InitCluster("cluster-1", T0, FOUNDER),
            c.CreateToken("tok-w", "worker", HASHES[0], T0, T0 + 10_000, False),
            c.CreateToken("tok-m", "manager", HASHES[1], T0, T0 + 10_000, False),
        ]
        cmds += [
            c.RegisterWorker(w, HASHES[0], "ef" * 32, "127.0.0.5", {"zone": "a"}, {"cpus": 2.0}, T0)
            for w in WORKERS[:2]
        ]
        self.apply(self.entries([[c.encode(cmd)] for cmd in cmds]))

    @rule(batch=batches)
    def commit(self, batch: list[list[bytes]]) -> None:
        self.apply(self.entries(batch))

    @rule()
    def new_term(self) -> None:
        self.term += 1

    # -- snapshots and restarts -----------------------------------------------------------------------

    @rule()
    def take_snapshot(self) -> None:
        """The core asks for a snapshot: the state as applied so far, written to a file it then owns."""
        self.snapshots += 1
        path = self.tmp / f"snap-{self.snapshots}.db"
        self.hopping.snapshot(str(path))
        if self.snapshot is not None:
            self.snapshot[0].unlink()  # the core keeps only the latest
        self.snapshot = (path, len(self.calls))

    @rule(restart=st.booleans())
    def rebuild(self, restart: bool) -> None:
        """A restart (the same data directory) or a new follower (its own): the state comes back from
        the latest snapshot (or none) plus the log after it, and every replayed answer is the same."""
        self.hopping.close()
        if not restart:
            shutil.rmtree(self.hopping_dir)
            self.hopping_dir = self.new_dir()
        self.hopping = Store(str(self.hopping_dir))
        path, covered = self.snapshot if self.snapshot is not None else (None, 0)
        self.hopping.restore(None if path is None else str(path))
        for entries, answers in self.calls[covered:]:
            assert self.hopping.apply(entries) == answers, "a replay after a restore answered differently"

    # -- the same state -------------------------------------------------------------------------------

    @invariant()
    def same_state(self) -> None:
        assert canonical(self.hopping) == canonical(self.straight)

    @rule()
    def replay_is_deterministic(self) -> None:
        """The whole log once more on a fresh store, in one apply call: byte-equal answers, same rows."""
        path = self.new_dir()
        again = fresh(path)
        try:
            entries = [e for entries, _ in self.calls for e in entries]
            assert again.apply(entries) == [a for _, answers in self.calls for a in answers]
            assert canonical(again) == canonical(self.straight)
        finally:
            again.close()
            shutil.rmtree(path)

    def teardown(self) -> None:
        self.straight.close()
        self.hopping.close()
        shutil.rmtree(self.tmp, ignore_errors=True)


def split_by_index(entries: Entries) -> list[Entries]:
    """The entries, one Raft entry (the commands sharing an index) per list."""
    out: list[Entries] = []
    for entry in entries:
        if out and out[-1][0][0] == entry[0]:
            out[-1].append(entry)
        else:
            out.append([entry])
    return out


def _op(payload: bytes) -> str:
    try:
        return c.decode(payload).OP
    except c.CommandError:
        return "malformed"


def _outcome(answer: bytes) -> str:
    doc = orjson.loads(answer)
    return "ok" if "ok" in doc else str(doc["error"])


def _diff(entries: Entries, want: list[bytes], got: list[bytes]) -> str:
    lines = ["answers differ:"]
    for (index, _, payload), a, b in zip(entries, want, got, strict=False):
        mark = "  " if a == b else "!!"
        lines.append(
            f"{mark} {index} {payload[:120]!r}\n     straight {a[:200]!r}\n     hopping  {b[:200]!r}"
        )
    return "\n".join(lines)


Replicas.TestCase.settings = settings(
    **PROFILES[PROFILE],
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestStoreReplicas = Replicas.TestCase


def test_the_real_paths_are_used(tmp_path: Path) -> None:
    """The machine above exercises the real thing: a snapshot written by Store.snapshot is a file the
    restore path accepts (checked, digest and all), and a Store reopened on a data directory starts
    empty (the state is rebuilt, never read back), which is why an applied entry is never re-applied."""
    (tmp_path / "a").mkdir()
    store = fresh(tmp_path / "a")
    store.apply([(1, 1, c.encode(c.InitCluster("cluster-1", T0, FOUNDER)))])
    store.snapshot(str(tmp_path / "snap.db"))
    store.close()
    reopened = Store(str(tmp_path / "a"))
    try:
        assert reopened.applied_index == 0
        assert reopened.conn.execute("SELECT count(*) FROM cluster").fetchone()[0] == 0
        reopened.restore(str(tmp_path / "snap.db"))
        assert reopened.applied_index == 1
        assert orjson.loads(
            reopened.apply([(2, 1, c.encode(c.InitCluster("cluster-1", T0, FOUNDER)))])[0]
        ) == {
            "error": "conflict",
            "message": "the cluster is already initialized",
        }
    finally:
        reopened.close()
