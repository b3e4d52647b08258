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
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import orjson
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from tests.unit.store.replay import SCRATCH, Entries, canonical, fresh, replay, to_wire
from tests.unit.store.strategies import CA_CERTS, FOUNDER, HASHES, T0, WORKERS, batches
from warren.spec.service import ServiceSpec, decode, spec_digest
from warren.store import commands as c
from warren.store.machine import Store

PROFILES: dict[str, dict[str, Any]] = {
    # The state machine's runs and steps; how many sets of logs other processes replay.
    "default": {"max_examples": 40, "stateful_step_count": 30, "hash_seed_examples": 2},
    "long": {"max_examples": 5000, "stateful_step_count": 80, "hash_seed_examples": 100},
}
PROFILE = os.environ.get("WARREN_HYPOTHESIS_PROFILE", "default")


WEB = decode(
    ServiceSpec,
    {
        "image": "nginx:1",
        "replicas": 3,
        "secrets": ["db-password"],
        "configs": [{"name": "app-conf"}],
        "mounts": [{"type": "volume", "source": "data", "target": "/data"}],
        "publish": [{"host": 8080, "container": 80, "mode": "ingress"}],
    },
)
# A founded cluster with something of everything, so that later commands meet a state: tokens of both
# roles, two workers with volumes, the CA and a certificate, a secret, a config, and service `web`
# (svc-1, naming all three) with tasks placed and pending. One command per entry.
FOUNDING = [
    [c.encode(cmd)]
    for cmd in (
        c.InitCluster("cluster-1", T0, FOUNDER),
        c.SetClusterCA(CA_CERTS[0], "c2VhbGVk", T0),
        c.CreateToken("tok-w", "worker", HASHES[0], T0, T0 + 10_000, False),
        c.CreateToken("tok-m", "manager", HASHES[1], T0, T0 + 10_000, False),
        *(
            c.RegisterWorker(w, HASHES[0], "ef" * 32, "127.0.0.5", {"zone": "a"}, {"cpus": 2.0}, T0)
            for w in WORKERS[:2]
        ),
        c.RecordCert("ab" * 32, WORKERS[0], "worker", T0 + 5000, T0),
        c.NodeVolumes(WORKERS[0], [c.VolumeRecord("data", "docker"), c.VolumeRecord("logs", "docker")], T0),
        c.NodeVolumes(WORKERS[1], [c.VolumeRecord("data", "process")], T0),
        c.CreateSecret("sec-1", "db-password", "c2VhbGVk", T0),
        c.CreateConfig("cfg-1", "app-conf", "aGk=", 2, "ab" * 32, T0),
        c.CreateService("svc-1", "web", WEB, T0),
        c.CreateTasks(
            [
                c.NewTask(f"task-{i}", "svc-1", i, node, state, "", WEB.task_spec(), spec_digest(WEB))
                for i, node, state in ((1, "w1", "assigned"), (2, "w2", "assigned"), (3, None, "pending"))
            ],
            T0,
        ),
    )
]

# What happens after a commit besides the invariant check, most often nothing.
THEN = (None, None, None, "snapshot", "restart", "follower", "replay", "new_term")


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
        if founded:
            self.apply(self.entries(FOUNDING))

    @rule(batch=batches, then=st.sampled_from(THEN))
    def commit(self, batch: list[list[bytes]], then: str | None) -> None:
        self.apply(self.entries(batch))
        if then == "snapshot":
            self.take_snapshot()
        elif then in ("restart", "follower"):
            self.rebuild(restart=then == "restart")
        elif then == "replay":
            self.replay_is_deterministic()
        elif then == "new_term":
            self.term += 1

    # -- snapshots and restarts -----------------------------------------------------------------------

    def take_snapshot(self) -> None:
        """The core asks for a snapshot: the state as applied so far, written to a file it then owns.
        Checked at once: restored on a scratch store, it is the state it was taken of."""
        self.snapshots += 1
        path = self.tmp / f"snap-{self.snapshots}.db"
        self.hopping.snapshot(str(path))
        if self.snapshot is not None:
            self.snapshot[0].unlink()  # the core keeps only the latest
        self.snapshot = (path, len(self.calls))
        scratch = Store(str(self.new_dir()))
        try:
            scratch.restore(str(path))
            assert canonical(scratch) == canonical(self.hopping), (
                "a snapshot is not the state it was taken of"
            )
        finally:
            scratch.close()

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

    def replay_is_deterministic(self) -> None:
        """The whole log once more on a fresh store, in one apply call: byte-equal answers, same rows."""
        answers, state = replay([[e for entries, _ in self.calls for e in entries]])
        assert answers == [a for _, reference in self.calls for a in reference]
        assert state == canonical(self.straight)

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
    max_examples=PROFILES[PROFILE]["max_examples"],
    stateful_step_count=PROFILES[PROFILE]["stateful_step_count"],
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestStoreReplicas = Replicas.TestCase


def numbered(batches_: list[list[list[bytes]]]) -> list[Entries]:
    """Apply calls of consecutive entries, numbered from 1, after the founding ones."""
    calls: list[Entries] = [[(i, 1, payloads[0]) for i, payloads in enumerate(FOUNDING, 1)]]
    index = len(FOUNDING)
    for batch in batches_:
        call: Entries = []
        for payloads in batch:
            index += 1
            call.extend((index, 1, p) for p in payloads)
        calls.append(call)
    return calls


def replay_elsewhere(logs: list[list[Entries]], hash_seed: int) -> list[dict[str, Any]]:
    """The logs replayed by `python -m tests.unit.store.replay` under another PYTHONHASHSEED."""
    env = {**os.environ, "PYTHONHASHSEED": str(hash_seed)}
    done = subprocess.run(
        [sys.executable, "-m", "tests.unit.store.replay"],
        input=to_wire(logs),
        capture_output=True,
        env=env,
        cwd=ROOT,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    out: list[dict[str, Any]] = orjson.loads(done.stdout)
    return out


ROOT = Path(__file__).resolve().parents[3]


@settings(
    max_examples=PROFILES[PROFILE]["hash_seed_examples"],
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
)
@given(st.lists(st.lists(batches, max_size=25), min_size=6, max_size=6))
def test_replay_is_the_same_in_processes_of_other_hash_seeds(logs_batches: list[list[Any]]) -> None:
    """Managers are processes with their own hash seeds (set and dict-of-set orders differ): the same
    logs give byte-equal answers and the same rows in this process and in two others."""
    logs = [numbered(b) for b in logs_batches]
    here = []
    for log in logs:
        answers, state = replay(log)
        here.append({"answers": [a.decode() for a in answers], "state": orjson.loads(orjson.dumps(state))})
    for seed in (1, 2):
        assert replay_elsewhere(logs, seed) == here, f"PYTHONHASHSEED={seed} replayed differently"


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
