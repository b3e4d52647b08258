"""The drill's cluster: its admin certificate (its daemons write it into the drill's own directory, never
the user's config dir, and its clients take it from there, whatever cluster the user's config names), and
its polling (`wait_until`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from warren.config import ClientSettings, DrillSettings
from warren.drill.cluster import LocalCluster, StepFailed, wait_until
from warren.drill.interrupts import Interrupts
from warren.pki import certs, userconfig
from warren.testing.managers import admin_credentials
from warren.testing.process import CONFIG_DIR_ENV, daemon_env
from warren.testing.wait import NotYet


def write_admin(config_dir: Path, cluster_id: str, monkeypatch: pytest.MonkeyPatch) -> bytes:
    """What `cluster init` writes for a new cluster's CLI, under `config_dir`; the CA certificate."""
    ca_key, ca_cert = certs.create_ca(cluster_id, 3600.0)
    key = certs.new_key()
    cert = certs.issue(ca_key, ca_cert, key.public_key(), name="admin", role="admin",
                       cluster_id=cluster_id, lifetime_s=3600.0)
    ca_pem = certs.cert_pem(ca_cert)
    with monkeypatch.context() as m:
        m.setenv(CONFIG_DIR_ENV, str(config_dir))
        userconfig.save_admin(cluster_id, ca_pem, certs.cert_pem(cert), certs.key_pem(key))
    return ca_pem


def test_the_daemons_write_into_the_drills_config_dir_not_the_users(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(CONFIG_DIR_ENV, str(tmp_path / "user"))
    monkeypatch.setenv("WARREN_MANAGER", "10.0.0.1:8080")
    env = daemon_env(tmp_path / "drill" / "config")
    assert env[CONFIG_DIR_ENV] == str(tmp_path / "drill" / "config")
    assert "WARREN_MANAGER" not in env
    cluster = LocalCluster(DrillSettings(), tmp_path / "drill", Interrupts())
    assert cluster.config_dir == tmp_path / "drill" / "config"
    m = cluster.new_manager()
    assert m.daemon.env[CONFIG_DIR_ENV] == str(cluster.config_dir)
    assert "WARREN_MANAGER" not in m.daemon.env


def test_the_drills_clients_use_its_own_certificate_once_it_exists(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The user has another cluster's admin certificate: the drill must not pick it.
    write_admin(tmp_path / "user", "cluster-users", monkeypatch)
    monkeypatch.setenv(CONFIG_DIR_ENV, str(tmp_path / "user"))
    cluster = LocalCluster(DrillSettings(), tmp_path / "drill", Interrupts())
    m = cluster.new_manager()
    with pytest.raises(NotYet, match="no admin certificate"):
        cluster.credentials()
    with pytest.raises(NotYet):
        m.probe  # noqa: B018 - the probe needs the certificate `cluster init` has not written yet
    assert admin_credentials(cluster.config_dir) is None

    ca_pem = write_admin(cluster.config_dir, "cluster-drill", monkeypatch)
    creds = cluster.credentials()
    assert creds.ca_pem == ca_pem
    assert Path(creds.dir).parent == cluster.config_dir / "clusters"
    assert m.probe is m.probe  # made once
    assert m.probe.address == m.api_addr
    with cluster.client(m.api_addr, ClientSettings()) as client:
        assert client.address == m.api_addr
    m.close()


def test_admin_credentials_skip_a_cluster_dir_without_its_key(tmp_path: Path) -> None:
    partial = tmp_path / "clusters" / "cluster-x-abc"
    partial.mkdir(parents=True)
    (partial / userconfig.CA_FILE).write_bytes(b"ca")  # admin.pem not written yet
    assert admin_credentials(tmp_path) is None


def test_wait_until_returns_once_the_condition_holds() -> None:
    answers: list[str | Exception] = [NotYet("1/2 running"), NotYet("1/2 running"), "done"]

    def check() -> str:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    assert wait_until(check, 5.0, "service", 0.001) == "done"


def test_wait_until_times_out_with_the_last_thing_seen() -> None:
    now = [0.0]

    def clock() -> float:
        now[0] += 1.0
        return now[0]

    def check() -> str:
        raise NotYet(f"1/2 running at {now[0]:g}")

    with pytest.raises(StepFailed, match=r"^no service 2/2 running within 3.0 s: 1/2 running at 3$"):
        wait_until(check, 3.0, "service 2/2 running", 0.0, clock)


def test_a_step_failure_ends_the_wait_at_once() -> None:
    calls = []

    def check() -> None:
        calls.append(1)
        raise StepFailed("manager1 exited with status 1")

    with pytest.raises(StepFailed, match="manager1 exited"):
        wait_until(check, 60.0, "manager", 0.0)
    assert calls == [1]
