"""Hypothesis strategies for every replicated command (warren.store.commands), encoded as Raft carries
them, for the store's stateful tests (test_store_stateful.py).

The names come from small pools, so that commands meet: a service names a secret that a later command
removes, a task reports on a node that was removed, a token is rotated before a worker joins with it.
Beside the commands the leader proposes, some are refused by apply (conflicts, unknown names, bad
tokens, invalid updates) and some by the codec (not JSON, an unknown op or version, a missing field):
a refusal's answer is part of what every manager must agree on.
"""

from __future__ import annotations

from typing import Any

import msgspec
import orjson
from hypothesis import strategies as st

from warren.pki import tokens
from warren.spec import taskstate
from warren.spec.service import ServiceSpec, decode, spec_digest
from warren.store import commands as c
from warren.store.schema import TABLES, json_text

T0 = 1_800_000_000.0
FOUNDER = c.ManagerRecord("manager-1", 1, "127.0.0.1:8080", "127.0.0.1:7946")

WORKERS = ("w1", "w2", "w3")
MANAGERS = ("manager-1", "manager-2", "manager-3")
NODES = (*WORKERS, *MANAGERS)
SERVICES = ("web", "api", "db")
SERVICE_IDS = ("svc-1", "svc-2", "svc-3", "svc-4")
SECRETS = ("db-password", "api-key")
CONFIGS = ("app-conf", "nginx-conf")
VOLUMES = ("data", "logs")
TASK_IDS = tuple(f"task-{i}" for i in range(1, 9))
TOKEN_IDS = ("tok-1", "tok-2", "tok-3")
# Join tokens as a user holds them; the log carries their digests.
TOKENS = ("SWMTKN-1-" + "a" * 50, "SWMTKN-1-" + "b" * 50, "SWMTKN-1-" + "c" * 50)
HASHES = tuple(tokens.digest(t) for t in TOKENS)
CA_CERTS = ("-----BEGIN CERTIFICATE-----A", "-----BEGIN CERTIFICATE-----B")

# A proposer's wall clock: mostly forwards, but managers' clocks differ, so any order may reach the log.
at = st.integers(0, 4000).map(lambda s: T0 + s / 2)

secret_lists = st.lists(st.sampled_from(SECRETS), max_size=2, unique=True)
config_lists = st.lists(st.sampled_from(CONFIGS), max_size=2, unique=True).map(
    lambda names: [{"name": n} for n in names]
)
publish_lists = st.lists(
    st.fixed_dictionaries(
        {
            "host": st.sampled_from([8080, 8081]),
            "container": st.just(80),
            "mode": st.sampled_from(["ingress", "host"]),
        }
    ),
    max_size=1,
)
mount_lists = st.lists(
    st.sampled_from(VOLUMES).map(lambda v: {"type": "volume", "source": v, "target": "/data"}), max_size=1
)

# Spec fields a create or an update writes, some with values the spec refuses (an update's merged
# document is decoded by apply, which refuses it as invalid).
SPEC_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "image": st.sampled_from(["nginx:1", "nginx:2", "redis:7"]),
    "replicas": st.integers(0, 4),
    "secrets": secret_lists,
    "configs": config_lists,
    "publish": publish_lists,
    "mounts": mount_lists,
    "labels": st.dictionaries(st.sampled_from(["tier", "team"]), st.sampled_from(["a", "b"]), max_size=2),
    "update": st.builds(lambda p: {"parallelism": p}, st.integers(1, 2)),
    "env": st.dictionaries(st.sampled_from(["A", "B"]), st.sampled_from(["1", "2"]), max_size=2),
}
BAD_CHANGES = st.sampled_from(
    [
        {"replicas": -1},
        {"image": ""},
        {"image": 5},
        {"bogus": True},
        {"secrets": "db-password"},
        {"mode": "x"},
    ]
)


# Specs a create carries: drawn from a few made once (a spec drawn field by field and decoded costs
# more than the apply it feeds), between them naming every secret, config and volume, both ingress
# ports and both publish modes, so that creates and removals meet.
SPEC_DOCS: list[dict[str, Any]] = [
    {"image": "nginx:1"},
    {"image": "nginx:2", "replicas": 2, "labels": {"tier": "a"}},
    {"image": "redis:7", "secrets": ["db-password"]},
    {"image": "nginx:1", "configs": [{"name": "app-conf"}]},
    {"image": "nginx:1", "publish": [{"host": 8080, "container": 80, "mode": "ingress"}]},
    {"image": "nginx:2", "publish": [{"host": 8081, "container": 80, "mode": "host"}]},
    {"image": "redis:7", "mounts": [{"type": "volume", "source": "logs", "target": "/data"}]},
    {
        "image": "nginx:1",
        "secrets": ["api-key"],
        "configs": [{"name": "nginx-conf"}],
        "mounts": [{"type": "volume", "source": "data", "target": "/data"}],
        "publish": [{"host": 8081, "container": 80, "mode": "ingress"}],
    },
    {"image": "nginx:2", "mode": "global", "env": {"A": "1"}},
    {"image": "nginx:1", "replicas": 0, "update": {"parallelism": 2}},
]
specs = st.sampled_from([decode(ServiceSpec, doc) for doc in SPEC_DOCS])


def _new_task(
    task_id: str, service_id: str, slot: int | None, node: str | None, spec: ServiceSpec
) -> c.NewTask:
    state: Any = "pending" if node is None else "assigned"
    return c.NewTask(task_id, service_id, slot, node, state, "", spec.task_spec(), spec_digest(spec))


maybe_node = st.none() | st.sampled_from(NODES)
maybe_version = st.none() | st.integers(1, 60)
task_states = st.sampled_from([*taskstate.RANK, "bogus"])

manager_records = st.builds(
    c.ManagerRecord,
    st.sampled_from(MANAGERS),
    st.integers(1, 4),
    st.sampled_from(["127.0.0.1:8080", "127.0.0.2:8080"]),
    st.sampled_from(["127.0.0.1:7946", "127.0.0.2:7946"]),
)
labels = st.dictionaries(st.sampled_from(["zone", "disk"]), st.sampled_from(["a", "ssd"]), max_size=2)
resources = st.sampled_from([{}, {"cpus": 2.0}, {"cpus": 4.0, "memory": 2**30}])

# Rows a backup import may carry, and some that no table takes.
import_rows = st.one_of(
    st.tuples(
        st.just("services"),
        st.lists(
            st.builds(
                lambda sid, name, t: {
                    "id": sid,
                    "name": name,
                    "spec": json_text({"image": "nginx:1"}),
                    "created_at": t,
                    "updated_at": t,
                    "version": 1,
                },
                st.sampled_from(SERVICE_IDS),
                st.sampled_from(SERVICES),
                at,
            ),
            max_size=2,
        ),
    ),
    st.tuples(
        st.just("nodes"),
        st.lists(
            st.builds(
                lambda name, t: {
                    "name": name,
                    "role": "worker",
                    "state": "ready",
                    "created_at": t,
                    "updated_at": t,
                    "version": 1,
                },
                st.sampled_from(WORKERS),
                at,
            ),
            max_size=2,
        ),
    ),
    st.tuples(st.sampled_from(TABLES), st.lists(st.sampled_from([{"bogus": 1}, {"version": 3}]), max_size=1)),
    st.tuples(st.sampled_from(["bogus", "meta", "sqlite_master"]), st.just([])),
)

commands: st.SearchStrategy[c.Command] = st.one_of(
    # cluster, tokens, managers, PKI
    st.builds(c.InitCluster, st.sampled_from(["cluster-1", "cluster-2"]), at, manager_records),
    st.builds(
        lambda tid, role, h, t, life, rotate: c.CreateToken(tid, role, h, t, t + life, rotate),
        st.sampled_from(TOKEN_IDS),
        st.sampled_from(["worker", "manager"]),
        st.sampled_from(HASHES),
        at,
        st.integers(-10, 3000),
        st.booleans(),
    ),
    st.builds(
        c.RegisterManager,
        st.sampled_from(MANAGERS),
        st.sampled_from(["127.0.0.2:8080", "127.0.0.3:8080"]),
        st.sampled_from(["127.0.0.2:7946", "127.0.0.3:7946"]),
        st.sampled_from(HASHES),
        at,
    ),
    st.builds(
        c.SetNodeState, st.sampled_from(NODES), st.sampled_from(["ready", "down", "joining", "bogus"]), at
    ),
    st.builds(c.RemoveNode, st.sampled_from(NODES), at),
    st.builds(c.ResetManagers, manager_records, at),
    st.builds(c.SetClusterCA, st.sampled_from(CA_CERTS), st.just("c2VhbGVk"), at),
    st.builds(
        lambda fp, node, t, life: c.RecordCert(fp, node, "worker", t + life, t),
        st.sampled_from(["ab" * 32, "cd" * 32]),
        st.sampled_from(NODES),
        at,
        st.integers(-10, 3000),
    ),
    st.builds(lambda table_rows: c.ImportRows(*table_rows), import_rows),
    # workers
    st.builds(
        c.RegisterWorker,
        st.sampled_from(WORKERS),
        st.sampled_from(HASHES),
        st.just("ef" * 32),
        st.sampled_from(["127.0.0.5", "127.0.0.6"]),
        labels,
        resources,
        at,
    ),
    st.builds(
        c.UpdateNode,
        st.sampled_from(NODES),
        st.sampled_from(["127.0.0.5", "127.0.0.7"]),
        labels,
        resources,
        at,
    ),
    st.builds(c.SetNodeAvailability, st.sampled_from(NODES), st.sampled_from(["active", "drain"]), at),
    st.builds(
        c.NodeVolumes,
        st.sampled_from(NODES),
        st.lists(
            st.builds(c.VolumeRecord, st.sampled_from(VOLUMES), st.sampled_from(["docker", "process"])),
            max_size=3,
        ),
        at,
    ),
    st.builds(c.RemoveVolume, st.sampled_from(NODES), st.sampled_from(VOLUMES), at),
    # services
    st.builds(c.CreateService, st.sampled_from(SERVICE_IDS), st.sampled_from(SERVICES), specs, at),
    st.builds(
        c.UpdateService,
        st.sampled_from(SERVICES),
        st.fixed_dictionaries({}, optional=SPEC_FIELDS) | BAD_CHANGES,
        at,
        maybe_version,
    ),
    st.builds(c.RemoveService, st.sampled_from(SERVICES), at, maybe_version),
    st.builds(c.RollbackService, st.sampled_from(SERVICES), at, maybe_version, st.booleans()),
    st.builds(
        c.SetUpdateStatus,
        st.sampled_from(SERVICES),
        st.none()
        | st.builds(
            lambda s, t: {"state": s, "message": "", "started_at": t},
            st.sampled_from(["updating", "paused", "completed"]),
            at,
        ),
        at,
    ),
    # tasks
    st.builds(
        c.CreateTasks,
        st.lists(
            st.builds(
                _new_task,
                st.sampled_from(TASK_IDS),
                st.sampled_from(SERVICE_IDS),
                st.none() | st.integers(1, 3),
                maybe_node,
                specs,
            ),
            min_size=1,
            max_size=3,
        ),
        at,
    ),
    st.builds(
        c.AssignTasks,
        st.lists(
            st.builds(c.Assignment, st.sampled_from(TASK_IDS), maybe_node, st.sampled_from(["", "no node"])),
            min_size=1,
            max_size=3,
        ),
        at,
    ),
    st.builds(
        c.SetTaskStatuses,
        st.lists(
            st.builds(
                c.TaskStatus,
                st.sampled_from(TASK_IDS),
                task_states,
                st.sampled_from(["", "up", "exit 1"]),
                at,
                maybe_node,
                st.none() | st.just("c0ffee"),
                st.none() | st.integers(-1, 3),
                st.sampled_from([None, "healthy", "unhealthy", "bogus"]),
                st.just(msgspec.UNSET) | st.sampled_from([{}, {"80": 30080}]),
            ),
            min_size=1,
            max_size=3,
        ),
    ),
    st.builds(
        c.SetTasksDesired,
        st.lists(st.sampled_from(TASK_IDS), min_size=1, max_size=3),
        st.sampled_from(["running", "shutdown"]),
        st.sampled_from(["", "scaled down"]),
        at,
    ),
    st.builds(c.RemoveTasks, st.lists(st.sampled_from(TASK_IDS), min_size=1, max_size=3)),
    # secrets and configs
    st.builds(
        c.CreateSecret,
        st.sampled_from(["sec-1", "sec-2", "sec-3"]),
        st.sampled_from(SECRETS),
        st.just("c2VhbGVk"),
        at,
    ),
    st.builds(c.RemoveSecret, st.sampled_from(SECRETS), at),
    st.builds(
        c.CreateConfig,
        st.sampled_from(["cfg-1", "cfg-2", "cfg-3"]),
        st.sampled_from(CONFIGS),
        st.just("aGk="),
        st.just(2),
        st.just("ab" * 32),
        at,
    ),
    st.builds(c.RemoveConfig, st.sampled_from(CONFIGS), at),
)

# Payloads the codec refuses: every manager must refuse them alike, and go on.
malformed = st.sampled_from(
    [
        b"not json",
        b"[1, 2]",
        orjson.dumps({"v": 99, "op": "service.remove", "name": "web", "at": T0}),
        orjson.dumps({"v": 1, "op": "service.teleport", "name": "web"}),
        orjson.dumps({"v": 1, "op": "service.remove", "name": "web"}),
        orjson.dumps({"v": 1, "op": "service.remove", "name": 5, "at": T0}),
        orjson.dumps({"v": 1, "op": "node.remove", "name": "w1", "at": T0, "extra": 1}),
    ]
)

# Commands the codec takes whose values SQLite cannot store: an int beyond its 64 bits (JSON allows
# one), a row with no column, a value that is not a scalar. Refused like any bad command, never a
# reason for every manager to stop at this entry.
I64_OVER = (2**63, 2**64 - 1)
unstorable = st.one_of(
    st.builds(
        c.ImportRows,
        st.sampled_from(TABLES),
        st.lists(
            st.sampled_from(
                [{}, {"version": [1]}, {"version": {"a": 1}}, *({"version": n} for n in I64_OVER)]
            ),
            min_size=1,
            max_size=2,
        ),
    ),
    st.builds(
        lambda n, t: c.InitCluster(
            "cluster-1", t, c.ManagerRecord("manager-1", n, "127.0.0.1:8080", "127.0.0.1:7946")
        ),
        st.sampled_from(I64_OVER),
        at,
    ),
    st.builds(
        lambda n, spec, t: c.CreateTasks([_new_task("task-1", "svc-1", n, None, spec)], t),
        st.sampled_from(I64_OVER),
        specs,
        at,
    ),
    st.builds(
        lambda n, t: c.SetTaskStatuses([c.TaskStatus("task-1", "failed", "exit", t, exit_code=n)]),
        st.sampled_from(I64_OVER),
        at,
    ),
    st.builds(
        lambda n, t: c.CreateConfig("cfg-9", "big-conf", "aGk=", n, "ab" * 32, t),
        st.sampled_from(I64_OVER),
        at,
    ),
    st.builds(lambda n, t: c.UpdateService("web", {"replicas": 1}, t, n), st.sampled_from(I64_OVER), at),
)

payloads = st.one_of(commands.map(c.encode), malformed, unstorable.map(c.encode))
# One Raft entry: the commands proposed together (they share its index).
entries = st.lists(payloads, min_size=1, max_size=3)
# One apply call of the core: consecutive committed entries.
batches = st.lists(entries, min_size=1, max_size=3)
