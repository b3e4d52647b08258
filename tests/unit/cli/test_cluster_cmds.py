"""`warren cluster info | join-token | backup` through `main`, with the manager replaced by
httpx.MockTransport."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.unit.cli.fake_api import CLUSTER, FakeManager, run

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
