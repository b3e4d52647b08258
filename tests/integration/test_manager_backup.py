"""`warren cluster backup` under write load, and `warren cluster init --restore` from good and bad files."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.integration.managers import ManagerCluster, ManagerProc, api, assert_error_body, cli, service_names
from warren.pki.join import new_join_key
from warren.testing.wait import eventually


@dataclass
class Writer:
    """Creates services through the API of each manager in turn; records when each was acknowledged."""

    managers: list[ManagerProc]
    acked: list[tuple[str, float]] = field(default_factory=list)  # (name, monotonic time of the 201)
    failures: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        clients = [api(m.api_addr, timeout=10) for m in self.managers]
        try:
            i = 0
            while not self.stop.is_set():
                name = f"bk-{i:05d}"
                try:
                    response = clients[i % len(clients)].post(
                        "/v1/services", json={"name": name, "image": "nginx"}
                    )
                except httpx.HTTPError as exc:
                    self.failures.append(f"{name}: {exc!r}")
                else:
                    if response.status_code == 201:
                        self.acked.append((name, time.monotonic()))
                    else:
                        self.failures.append(f"{name}: {response.status_code} {response.text}")
                i += 1
        finally:
            for client in clients:
                client.close()


def test_backup_under_load_restores_every_acknowledged_write(
    make_managers: Callable[..., ManagerCluster], tmp_path: Path
) -> None:
    c = make_managers()
    managers = c.form(3)
    leader = c.leader()
    follower = c.followers(leader)[0]
    cluster_id = leader.info()["cluster_id"]
    # Tokens issued before the backup must work in the restored cluster.
    manager_token = c.join_token(leader, "manager")
    worker_token = c.join_token(leader, "worker")

    writer = Writer(managers)
    thread = threading.Thread(target=writer.run, name="writer", daemon=True)
    thread.start()
    try:
        eventually(lambda: len(writer.acked) >= 30, 30, "the writer to get 30 writes acknowledged")
        backup = tmp_path / "warren-backup.db"
        started = time.monotonic()
        result = cli("cluster", "backup", "--output", str(backup), "--manager", follower.api_addr)
        # Keep writing a little after the backup: those writes may or may not be in it.
        count = len(writer.acked)
        eventually(lambda: len(writer.acked) >= count + 10, 30, "10 more writes after the backup")
    finally:
        writer.stop.set()
        thread.join(30)
    assert result.returncode == 0, str(result)
    assert f"Backup written to {backup}" in result.stdout, result.stdout
    assert not writer.failures, writer.failures[:5]
    must_have = [name for name, at in writer.acked if at < started]
    assert len(must_have) >= 30
    assert not os.path.exists(f"{backup}.tmp")

    # Stop the whole cluster, then found a new one from the backup in a fresh data dir.
    for m in managers:
        assert m.stop() == 0, m.log_tail()
    # With the old cluster's data key (any manager's), the restore keeps its CA, so the tokens (which pin
    # it) and workers' certificates stay valid.
    restored_cluster = make_managers()
    data_key = leader.data_dir / "tls" / "data.key"
    restored = restored_cluster.new_manager().init(restore=backup, restore_key=data_key)
    out = restored.output()
    assert f"✓ State restored from {backup}" in out and "✓ Cluster CA restored" in out, out
    info = restored.info()
    assert info["cluster_id"] == cluster_id
    assert [m["name"] for m in info["managers"]] == [restored.name]
    assert info["quorum"] == {"managers": 1, "needed": 1, "reachable": 1, "ok": True}, info["quorum"]
    names = set(service_names(restored.services(consistent=True)))
    missing = [n for n in must_have if n not in names]
    assert not missing, f"{len(missing)} services acknowledged before the backup are missing: {missing[:5]}"
    assert names <= {name for name, _ in writer.acked}, "the restored state holds services never acknowledged"

    # The manager token issued before the backup admits a new manager to the restored cluster ...
    joined = restored_cluster.new_manager().join(manager_token, restored.api_addr)
    assert "Raft quorum: 2/2 managers (needs 2 for majority)" in joined.output(), joined.output()
    assert joined.info()["cluster_id"] == cluster_id
    restored_cluster.wait_same_services([joined], restored)
    # ... and the worker token is known too (refused for the wrong role, not as unknown).
    with api(restored.api_addr) as client:
        response = client.post(
            "/v1/managers/join",
            json={
                "token": worker_token,
                "api_addr": "127.0.0.1:1",
                "raft_addr": "127.0.0.1:2",
                "csr": new_join_key().csr_pem,
            },
        )
    body = assert_error_body(response, 401, "unauthorized")
    assert "worker join token" in body["message"], body


def test_restore_from_a_corrupt_file_fails_cleanly(
    make_managers: Callable[..., ManagerCluster], tmp_path: Path
) -> None:
    corrupt = tmp_path / "corrupt.db"
    corrupt.write_bytes(os.urandom(64 * 1024))
    c = make_managers()
    m = c.new_manager().init(restore=corrupt, wait=False)
    code = m.wait_exit(30)
    if code is None:
        m.kill()
    assert code not in (None, 0), f"restore from random bytes exited {code}\n{m.log_tail()}"
    err = m.errors().strip()
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("warren: "), f"expected one error line:\n{err}"
    assert str(corrupt) in lines[0], lines[0]
    assert "Traceback" not in err
    assert "✓" not in m.output(), m.output()
    assert not m.alive
    with pytest.raises(httpx.ConnectError):
        with api(m.api_addr, timeout=2) as client:
            client.get("/v1/health")


def test_restore_without_the_data_key_gets_a_new_ca_and_says_what_it_left(
    make_managers: Callable[..., ManagerCluster], tmp_path: Path
) -> None:
    c = make_managers()
    first = c.init()
    old_token = c.join_token(first, "manager")
    secret = tmp_path / "value.txt"
    secret.write_text("not in any backup in the clear")
    cli("secret", "create", "db-password", str(secret), "--manager", first.api_addr).ok()
    backup = tmp_path / "backup.db"
    cli("cluster", "backup", "--output", str(backup), "--manager", first.api_addr).ok()
    assert b"not in any backup in the clear" not in backup.read_bytes()
    assert first.stop() == 0, first.log_tail()

    # Another cluster's key (or any 32 bytes) does not open the backup's CA: refused (a bad flag value,
    # exit 2) before anything is written, so the same data dir takes the next attempt.
    wrong = tmp_path / "wrong.key"
    wrong.write_bytes(os.urandom(32))
    restored_cluster = make_managers()
    restored = restored_cluster.new_manager().init(restore=backup, restore_key=wrong, wait=False)
    assert restored.wait_exit(30) == 2, restored.log_tail()
    assert "does not open the CA key" in restored.errors(), restored.errors()
    restored.init(restore=backup)
    out = restored.output()
    assert "✓ Cluster CA created" in out and "0 secrets)" in out, out
    assert "! 1 secrets and the old CA were not restored" in out, out
    assert cli("secret", "ls", "-o", "json", "--manager", restored.api_addr).ok().stdout.strip() == "[]"
    # A token of the old cluster pins the old CA: a joining manager stops before sending it.
    joiner = restored_cluster.new_manager().join(old_token, restored.api_addr, wait=False)
    assert joiner.wait_exit(30) == 1, joiner.log_tail()
    assert "does not match the join token's digest" in joiner.errors(), joiner.errors()
