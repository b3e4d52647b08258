"""Client commands end to end through `main`, with the manager replaced by httpx.MockTransport."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from warren.cli.main import main
from warren.client import ManagerClient

Route = Callable[[httpx.Request], httpx.Response]

CLUSTER = {
    "cluster_id": "cluster-abc123",
    "created_at": 1790000000.0,
    "node": "manager-1",
    "leader": {"name": "manager-1", "api_addr": "192.168.1.10:8080", "raft_id": 1},
    "quorum": {"managers": 3, "needed": 2, "reachable": 3, "ok": True},
    "managers": [
        {"name": "manager-1", "raft_id": 1, "api_addr": "192.168.1.10:8080", "raft_addr": "192.168.1.10:7946",
         "role": "leader", "status": "ready"},
        {"name": "manager-2", "raft_id": 2, "api_addr": "192.168.1.11:8080", "raft_addr": "192.168.1.11:7946",
         "role": "follower", "status": "ready"},
        {"name": "manager-3", "raft_id": 3, "api_addr": "192.168.1.12:8080", "raft_addr": "192.168.1.12:7946",
         "role": "follower", "status": "ready"},
    ],
    "workers": 0,
    "raft": {"term": 3, "commit_index": 120, "applied_index": 120},
}

NODES = [
    {"name": "manager-1", "role": "manager", "state": "ready", "availability": "active", "raft_id": 1,
     "api_addr": "192.168.1.10:8080", "raft_addr": "192.168.1.10:7946", "created_at": 1790000000.0,
     "updated_at": 1790000000.0, "version": 3},
    {"name": "manager-22", "role": "manager", "state": "down", "availability": "active", "raft_id": 2,
     "api_addr": "192.168.1.11:8080", "raft_addr": "192.168.1.11:7946", "created_at": 1790000000.0,
     "updated_at": 1790000000.0, "version": 9},
]

SERVICE_SPEC = {"name": "web", "image": "nginx:1.27", "command": None, "replicas": 3, "mode": "replicated",
                "env": {"TZ": "UTC"}, "labels": {}}
SERVICE = {
    "id": "svc-1", "name": "web", "version": 12, "created_at": 1790000000.0, "updated_at": 1790000000.0,
    "spec": SERVICE_SPEC,
}
AGENT = {
    "id": "svc-2", "name": "agent", "version": 14, "created_at": 1790000000.0, "updated_at": 1790000000.0,
    "spec": {"name": "agent", "image": "alpine", "command": ["sleep", "infinity"], "replicas": 1,
             "mode": "global", "env": {}, "labels": {}},
}


class FakeManager:
    """Routes by (method, path); records every request."""

    def __init__(self, routes: dict[tuple[str, str], Route | Any]) -> None:
        self.routes = routes
        self.requests: list[httpx.Request] = []
        self.managers: list[str] = []

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        route = self.routes.get((request.method, request.url.path))
        if route is None:
            return httpx.Response(404, json={"error": "not_found", "message": f"no route {request.url.path}"})
        if callable(route):
            response: httpx.Response = route(request)
            return response
        return httpx.Response(201 if request.method == "POST" else 200, json=route)

    def connect(self, manager: str) -> ManagerClient:
        self.managers.append(manager)
        return ManagerClient(manager, transport=httpx.MockTransport(self.handle), sleep=lambda s: None)

    def body(self, index: int = -1) -> Any:
        return json.loads(self.requests[index].content)


def run(fake: FakeManager, *argv: str) -> int:
    return main(list(argv), connect=fake.connect)


# -- cluster info -----------------------------------------------------------------------------------

def test_cluster_info_table_matches_the_seed(capsys: pytest.CaptureFixture[str]) -> None:
    fake = FakeManager({("GET", "/v1/cluster"): CLUSTER})
    assert run(fake, "cluster", "info", "--manager", "192.168.1.10:8080") == 0
    assert capsys.readouterr().out == (
        "Cluster ID: cluster-abc123\n"
        "Raft Quorum: 3 managers (needs 2 for majority)\n"
        "Leader: manager-1 (192.168.1.10:8080)\n"
        "\n"
        "Managers:\n"
        "  manager-1  192.168.1.10:8080  Leader    ready\n"
        "  manager-2  192.168.1.11:8080  Follower  ready\n"
        "  manager-3  192.168.1.12:8080  Follower  ready\n"
        "\n"
        "Workers: 0\n"
    )
    assert fake.managers == ["192.168.1.10:8080"]


def test_cluster_info_quorum_lost_and_no_leader(capsys: pytest.CaptureFixture[str]) -> None:
    info = dict(CLUSTER, leader=None, quorum={"managers": 2, "needed": 2, "reachable": 1, "ok": False},
                managers=[
                    {"name": "manager-1", "api_addr": "10.0.0.1:8080", "role": "follower",
                     "status": "not ready"},
                    {"name": "manager-2", "api_addr": "10.0.0.2:8080", "role": "unknown",
                     "status": "unreachable"},
                ], workers=4)
    fake = FakeManager({("GET", "/v1/cluster"): info})
    assert run(fake, "cluster", "info") == 0
    out = capsys.readouterr().out
    assert "Raft Quorum: LOST (1 of 2 managers reachable, needs 2 for majority)\n" in out
    assert "Leader: none (no quorum; writes are refused)\n" in out
    assert "  manager-1  10.0.0.1:8080  Follower  not ready\n" in out
    assert "  manager-2  10.0.0.2:8080  Unknown   unreachable\n" in out
    assert out.endswith("\nWorkers: 4\n")


def test_cluster_info_single_manager(capsys: pytest.CaptureFixture[str]) -> None:
    info = dict(CLUSTER, quorum={"managers": 1, "needed": 1, "reachable": 1, "ok": True},
                managers=CLUSTER["managers"][:1])  # type: ignore[index]
    assert run(FakeManager({("GET", "/v1/cluster"): info}), "cluster", "info") == 0
    assert "Raft Quorum: 1 manager (needs 1 for majority)\n" in capsys.readouterr().out


@pytest.mark.parametrize("argv", [
    ["cluster", "info", "-o", "json"], ["-o", "json", "cluster", "info"], ["cluster", "-o", "json", "info"],
    ["cluster", "info", "--format=json"],
])
def test_cluster_info_json_is_the_api_answer(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert run(FakeManager({("GET", "/v1/cluster"): CLUSTER}), *argv) == 0
    assert json.loads(capsys.readouterr().out) == CLUSTER


def test_cluster_info_yaml(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(FakeManager({("GET", "/v1/cluster"): CLUSTER}), "cluster", "info", "-o", "yaml") == 0
    out = capsys.readouterr().out
    assert yaml.safe_load(out) == CLUSTER
    assert out.startswith("cluster_id: cluster-abc123\n")  # API order kept


def test_manager_from_env_and_flag_precedence(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    fake = FakeManager({("GET", "/v1/cluster"): CLUSTER})
    monkeypatch.setenv("WARREN_MANAGER", "lb.warren.local:8080")
    assert run(fake, "cluster", "info") == 0
    assert run(fake, "--manager", "10.0.0.9:8080", "cluster", "info") == 0
    assert run(fake, "--manager", "10.0.0.9:8080", "cluster", "info", "--manager", "10.0.0.7:8080") == 0
    monkeypatch.delenv("WARREN_MANAGER")
    assert run(fake, "cluster", "info") == 0
    assert fake.managers == ["lb.warren.local:8080", "10.0.0.9:8080", "10.0.0.7:8080", "127.0.0.1:8080"]


# -- join-token -------------------------------------------------------------------------------------

TOKEN = "SWMTKN-1-5k7j9h3f2d1s9a7k5l3n1m9p7r5t3v1x9z7b5d3f1h9j7k5"


def token_answer(role: str, ttl_s: float = 86400.0) -> dict[str, Any]:
    return {"role": role, "token": TOKEN, "expires_at": 1790086400.0, "ttl_s": ttl_s}


def test_join_token_manager_matches_the_seed(capsys: pytest.CaptureFixture[str]) -> None:
    fake = FakeManager({("POST", "/v1/cluster/join-tokens"): token_answer("manager")})
    assert run(fake, "cluster", "join-token", "manager", "--manager", "192.168.1.10:8080") == 0
    assert capsys.readouterr().out == (
        "Join Token (expires in 24h):\n"
        f"{TOKEN}\n"
        "\n"
        "On other nodes, run:\n"
        "warren manager join \\\n"
        f"  --token {TOKEN} \\\n"
        "  --manager 192.168.1.10:8080 \\\n"
        "  --advertise-addr <this-node-ip>:8080\n"
    )
    assert fake.body() == {"role": "manager", "rotate": False}


def test_join_token_worker_rotate(capsys: pytest.CaptureFixture[str]) -> None:
    fake = FakeManager({("POST", "/v1/cluster/join-tokens"): token_answer("worker", 5400)})
    assert run(fake, "cluster", "join-token", "worker", "--rotate", "--manager", "10.0.0.5:8080") == 0
    out = capsys.readouterr().out
    assert out.startswith(f"Join Token (expires in 1h30m):\n{TOKEN}\n")
    assert f"warren worker start \\\n  --token {TOKEN} \\\n  --manager 10.0.0.5:8080\n" in out
    assert fake.body() == {"role": "worker", "rotate": True}


def test_join_token_ttl_is_sent_in_seconds(capsys: pytest.CaptureFixture[str]) -> None:
    fake = FakeManager({("POST", "/v1/cluster/join-tokens"): token_answer("manager", 90)})
    argv = ("cluster", "join-token", "manager", "--ttl", "1m30s", "-q", "--manager", "10.0.0.5:8080")
    assert run(fake, *argv) == 0
    assert capsys.readouterr().out == f"{TOKEN}\n"
    assert fake.body() == {"role": "manager", "rotate": False, "ttl_s": 90.0}


def test_join_token_from_loopback_shows_the_advertised_address(capsys: pytest.CaptureFixture[str]) -> None:
    fake = FakeManager({("POST", "/v1/cluster/join-tokens"): token_answer("manager"),
                        ("GET", "/v1/cluster"): CLUSTER})
    assert run(fake, "cluster", "join-token", "manager") == 0
    assert "  --manager 192.168.1.10:8080 \\\n" in capsys.readouterr().out


@pytest.mark.parametrize("quiet", ["-q", "--quiet"])
def test_join_token_quiet_prints_only_the_token(quiet: str, capsys: pytest.CaptureFixture[str]) -> None:
    fake = FakeManager({("POST", "/v1/cluster/join-tokens"): token_answer("worker")})
    assert run(fake, "cluster", "join-token", "worker", quiet, "-o", "json") == 0
    assert capsys.readouterr().out == f"{TOKEN}\n"


def test_join_token_json(capsys: pytest.CaptureFixture[str]) -> None:
    fake = FakeManager({("POST", "/v1/cluster/join-tokens"): token_answer("manager")})
    assert run(fake, "cluster", "join-token", "manager", "-o", "json") == 0
    assert json.loads(capsys.readouterr().out) == token_answer("manager")


def test_unauthorized_is_an_error_line(capsys: pytest.CaptureFixture[str]) -> None:
    fake = FakeManager({("POST", "/v1/cluster/join-tokens"): lambda r: httpx.Response(
        401, json={"error": "unauthorized", "message": "join token expired"})})
    assert run(fake, "cluster", "join-token", "manager") == 1
    assert capsys.readouterr().err == "warren: join token expired\n"


# -- backup -----------------------------------------------------------------------------------------

BACKUP = b"SQLite format 3\x00" + b"x" * 5000


def backup_manager() -> FakeManager:
    return FakeManager({("GET", "/v1/cluster/backup"): lambda r: httpx.Response(
        200, content=BACKUP, headers={"Content-Type": "application/vnd.sqlite3"})})


def test_backup_writes_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "warren.db"
    assert run(backup_manager(), "cluster", "backup", "--output", str(target)) == 0
    assert target.read_bytes() == BACKUP
    assert not (tmp_path / "warren.db.tmp").exists()
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"Backup written to {target} ({len(BACKUP)} bytes)"
    assert "tls/data.key (--restore-key)" in out[1] and len(out) == 2


def test_backup_refuses_to_overwrite_without_force(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "warren.db"
    target.write_bytes(b"old")
    fake = backup_manager()
    assert run(fake, "cluster", "backup", "--output", str(target)) == 1
    assert capsys.readouterr().err == f"warren: {target} already exists (use --force to overwrite it)\n"
    assert target.read_bytes() == b"old"
    assert fake.requests == []
    assert run(fake, "cluster", "backup", "--output", str(target), "--force", "-o", "json") == 0
    assert target.read_bytes() == BACKUP
    assert json.loads(capsys.readouterr().out) == {"file": str(target), "bytes": len(BACKUP)}


def test_failed_backup_leaves_nothing_behind(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "warren.db"
    fake = FakeManager({("GET", "/v1/cluster/backup"): lambda r: httpx.Response(
        409, json={"error": "conflict", "message": "backup already running"})})
    assert run(fake, "cluster", "backup", "--output", str(target)) == 1
    assert capsys.readouterr().err == "warren: backup already running\n"
    assert list(tmp_path.iterdir()) == []


def test_backup_into_a_missing_directory_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "missing" / "warren.db"
    assert run(backup_manager(), "cluster", "backup", "--output", str(target)) == 1
    err = capsys.readouterr().err
    assert err.startswith("warren: ") and "No such file or directory" in err and err.count("\n") == 1


# -- nodes ------------------------------------------------------------------------------------------

def test_node_list_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(FakeManager({("GET", "/v1/nodes"): NODES}), "node", "list") == 0
    assert capsys.readouterr().out == (
        "NAME        ROLE     STATE  AVAILABILITY  ADDRESS\n"
        "manager-1   manager  ready  active        192.168.1.10:8080\n"
        "manager-22  manager  down   active        192.168.1.11:8080\n"
    )


def test_node_list_empty_table_has_headers(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(FakeManager({("GET", "/v1/nodes"): []}), "node", "list") == 0
    assert capsys.readouterr().out == "NAME  ROLE  STATE  AVAILABILITY  ADDRESS\n"


@pytest.mark.parametrize("fmt", ["json", "yaml"])
def test_node_list_machine_formats(fmt: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(FakeManager({("GET", "/v1/nodes"): NODES}), "node", "list", "-o", fmt) == 0
    out = capsys.readouterr().out
    assert (json.loads(out) if fmt == "json" else yaml.safe_load(out)) == NODES


def test_node_inspect_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(FakeManager({("GET", "/v1/nodes/manager-1"): NODES[0]}), "node", "inspect", "manager-1") == 0
    out = capsys.readouterr().out
    assert out.startswith("FIELD         VALUE\nname          manager-1\n")
    assert "created_at    2026-09-21T" in out


def test_node_inspect_missing(capsys: pytest.CaptureFixture[str]) -> None:
    fake = FakeManager({("GET", "/v1/nodes/ghost"): lambda r: httpx.Response(
        404, json={"error": "not_found", "message": "no node 'ghost'"})})
    assert run(fake, "node", "inspect", "ghost") == 1
    assert capsys.readouterr().err == "warren: no node 'ghost'\n"


WORKERS = [
    {"name": "worker-1", "role": "worker", "state": "ready", "availability": "active", "raft_id": None,
     "api_addr": "192.168.1.99", "raft_addr": None, "addr": "192.168.1.20", "labels": {"zone": "eu"},
     "resources": {"cpus": 4, "memory": 8 * 2**30, "drivers": ["docker", "process"], "hostname": "w1"},
     "created_at": 1790000000.0, "updated_at": 1790000000.0, "version": 21},
    {"name": "worker-2", "role": "worker", "state": "down", "availability": "drain", "raft_id": None,
     "api_addr": None, "raft_addr": None, "addr": "192.168.1.21", "labels": {},
     "resources": {"cpus": 0.5, "memory": 1536 * 2**20, "drivers": ["process"], "hostname": "w2"},
     "created_at": 1790000000.0, "updated_at": 1790000000.0, "version": 25},
]


def test_node_list_shows_workers_with_their_resources(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(FakeManager({("GET", "/v1/nodes"): NODES[:1] + WORKERS}), "node", "list") == 0
    assert capsys.readouterr().out == (
        "NAME       ROLE     STATE  AVAILABILITY  ADDRESS            CPUS  MEMORY\n"
        "manager-1  manager  ready  active        192.168.1.10:8080  -     -\n"
        "worker-1   worker   ready  active        192.168.1.20       4     8GiB\n"
        "worker-2   worker   down   drain         192.168.1.21       0.5   1.5GiB\n"
    )


def test_node_inspect_shows_everything_with_readable_memory(capsys: pytest.CaptureFixture[str]) -> None:
    fake = FakeManager({("GET", "/v1/nodes/worker-1"): WORKERS[0]})
    assert run(fake, "node", "inspect", "worker-1") == 0
    out = capsys.readouterr().out
    for line in ("labels.zone         eu\n", "resources.cpus      4\n",
                 "resources.memory    8589934592 (8GiB)\n",
                 'resources.drivers   ["docker","process"]\n', "resources.hostname  w1\n",
                 "addr                192.168.1.20\n", "availability        active\n"):
        assert line in out
    assert run(fake, "node", "inspect", "worker-1", "-o", "json") == 0
    assert json.loads(capsys.readouterr().out) == WORKERS[0]  # bytes stay bytes for tools


def test_node_drain_and_activate(capsys: pytest.CaptureFixture[str]) -> None:
    def availability(request: httpx.Request) -> httpx.Response:
        wanted = json.loads(request.content)["availability"]
        return httpx.Response(200, json={**WORKERS[0], "availability": wanted})

    fake = FakeManager({("POST", "/v1/nodes/worker-1/availability"): availability})
    assert run(fake, "node", "drain", "worker-1") == 0
    assert fake.body() == {"availability": "drain"}
    assert capsys.readouterr().out == "Node worker-1 drained: its tasks move to other nodes\n"
    assert run(fake, "node", "activate", "worker-1") == 0
    assert fake.body() == {"availability": "active"}
    assert capsys.readouterr().out == "Node worker-1 active\n"
    assert run(fake, "node", "drain", "worker-1", "-o", "json") == 0
    assert json.loads(capsys.readouterr().out)["availability"] == "drain"


def test_node_drain_of_an_unknown_node(capsys: pytest.CaptureFixture[str]) -> None:
    fake = FakeManager({("POST", "/v1/nodes/ghost/availability"): lambda r: httpx.Response(
        404, json={"error": "not_found", "message": "no node named 'ghost'"})})
    assert run(fake, "node", "drain", "ghost") == 1
    assert capsys.readouterr().err == "warren: no node named 'ghost'\n"


def test_node_rm(capsys: pytest.CaptureFixture[str]) -> None:
    fake = FakeManager({("DELETE", "/v1/nodes/manager-22"): {"removed": "manager-22"}})
    assert run(fake, "node", "rm", "manager-22") == 0
    assert capsys.readouterr().out == "Node manager-22 removed\n"


# -- services ---------------------------------------------------------------------------------------

def test_service_create_sends_only_what_was_given(capsys: pytest.CaptureFixture[str]) -> None:
    fake = FakeManager({("POST", "/v1/services"): SERVICE})
    assert run(fake, "service", "create", "web", "--image", "nginx:1.27") == 0
    assert fake.body() == {"name": "web", "image": "nginx:1.27"}
    assert capsys.readouterr().out == "Service web created (3 replicas, id svc-1)\n"


def test_service_create_full(capsys: pytest.CaptureFixture[str]) -> None:
    fake = FakeManager({("POST", "/v1/services"): AGENT})
    assert run(fake, "service", "create", "agent", "--image", "alpine", "--mode", "global",
               "--command", "sh -c 'sleep infinity'", "--env", "A=1", "--env", "B=x=y", "--env", "C=",
               "--label", "tier=edge") == 0
    assert fake.body() == {
        "name": "agent", "image": "alpine", "command": ["sh", "-c", "sleep infinity"], "mode": "global",
        "env": {"A": "1", "B": "x=y", "C": ""}, "labels": {"tier": "edge"},
    }
    assert capsys.readouterr().out == "Service agent created (one task per node, id svc-2)\n"


def test_service_create_conflict(capsys: pytest.CaptureFixture[str]) -> None:
    fake = FakeManager({("POST", "/v1/services"): lambda r: httpx.Response(
        409, json={"error": "conflict", "message": "service 'web' already exists"})})
    assert run(fake, "service", "create", "web", "--image", "nginx", "--replicas", "2") == 1
    assert fake.body()["replicas"] == 2
    assert capsys.readouterr().err == "warren: service 'web' already exists\n"


def test_service_list_table(capsys: pytest.CaptureFixture[str]) -> None:
    services = [{**SERVICE, "replicas_running": 2, "replicas_desired": 3},
                {**AGENT, "replicas_running": 2, "replicas_desired": 2}]
    assert run(FakeManager({("GET", "/v1/services"): services}), "service", "list") == 0
    assert capsys.readouterr().out == (
        "NAME   REPLICAS      IMAGE       VERSION\n"
        "web    2/3           nginx:1.27  12\n"
        "agent  2/2 (global)  alpine      14\n"
    )


def test_service_inspect_formats(capsys: pytest.CaptureFixture[str]) -> None:
    fake = FakeManager({("GET", "/v1/services/web"): SERVICE})
    assert run(fake, "service", "inspect", "web") == 0
    out = capsys.readouterr().out
    assert "spec.image     nginx:1.27\n" in out
    assert 'spec.env.TZ    UTC\n' in out
    assert "spec.labels    -\n" in out
    assert run(fake, "service", "inspect", "web", "-o", "yaml") == 0
    assert yaml.safe_load(capsys.readouterr().out) == SERVICE


def test_service_scale(capsys: pytest.CaptureFixture[str]) -> None:
    scaled = {**SERVICE, "spec": {**SERVICE_SPEC, "replicas": 5}}
    fake = FakeManager({("PATCH", "/v1/services/web"): scaled})
    assert run(fake, "service", "scale", "web", "5") == 0
    assert fake.body() == {"replicas": 5}
    assert capsys.readouterr().out == "Service web scaled to 5 replicas\n"


def test_service_rm(capsys: pytest.CaptureFixture[str]) -> None:
    fake = FakeManager({("DELETE", "/v1/services/web"): {"removed": "web"}})
    assert run(fake, "service", "rm", "web", "-o", "json") == 0
    assert json.loads(capsys.readouterr().out) == {"removed": "web"}
    assert run(fake, "service", "rm", "web") == 0
    assert capsys.readouterr().out == "Service web removed\n"
