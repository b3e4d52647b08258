"""A manager that also runs tasks (its local worker, the default) and `warren apply -f` end to end."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.managers import ManagerProc, cli, get_json, manager_clusters
from warren.testing.wait import eventually

HYBRID_FLAGS = [
    "--raft-heartbeat-timeout", "500ms", "--raft-election-timeout", "500ms", "--runtime", "process",
]  # fmt: skip

SERVICES = """\
kind: service
name: alpha
image: local
driver: process
command: ["sleep", "100000"]
replicas: 2
---
name: beta
image: local
driver: process
command: ["sleep", "100000"]
mode: global
restart: {condition: on-failure, delay_s: "500ms"}
"""


@pytest.fixture
def hybrid(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[ManagerProc]:
    with manager_clusters(tmp_path, request) as make:
        manager = make(extra_flags=HYBRID_FLAGS).init()
        yield manager
        # The local worker's processes die with their sessions' leaders only if killed: kill them.
        import os
        import signal

        from tests.integration.workers import task_processes

        for pid in task_processes("WARREN_SERVICE=alpha") + task_processes("WARREN_SERVICE=beta"):
            os.kill(pid, signal.SIGKILL)


def running(addr: str, service: str) -> list[dict[str, object]]:
    tasks = get_json(addr, f"/v1/services/{service}/tasks")
    return [t for t in tasks if t["state"] == "running" and t["desired_state"] == "running"]


def test_hybrid_manager_runs_tasks_and_apply_is_idempotent(hybrid: ManagerProc, tmp_path: Path) -> None:
    addr = hybrid.api_addr
    node = eventually(
        lambda: [n for n in get_json(addr, "/v1/nodes") if n["role"] == "worker" and n["state"] == "ready"],
        30,
        "the manager's local worker to register",
    )[0]
    info = cli("cluster", "info", "--manager", addr).ok()
    assert "Workers: 1" in info.stdout, info.stdout

    path = tmp_path / "services.yaml"
    path.write_text(SERVICES)
    first = cli("apply", "--detach", "-f", str(path), "--manager", addr).ok()
    assert "service/alpha created" in first.stdout and "service/beta created" in first.stdout, first.stdout
    eventually(
        lambda: len(running(addr, "alpha")) == 2 and len(running(addr, "beta")) == 1, 30, "tasks running"
    )
    assert {t["node"] for t in running(addr, "alpha")} == {node["name"]}

    again = cli("apply", "--detach", "-f", str(path), "--manager", addr).ok()
    assert again.stdout.count("unchanged") == 2, again.stdout
    versions = {s["name"]: s["version"] for s in get_json(addr, "/v1/services")}

    path.write_text(SERVICES.replace("replicas: 2", "replicas: 3"))
    third = cli("apply", "--detach", "-f", str(path), "--manager", addr).ok()
    assert "service/alpha updated" in third.stdout and "service/beta unchanged" in third.stdout, third.stdout
    eventually(lambda: len(running(addr, "alpha")) == 3, 30, "alpha scaled to 3 by apply")
    after = {s["name"]: s["version"] for s in get_json(addr, "/v1/services")}
    assert after["beta"] == versions["beta"], "an unchanged service is not written"

    bad = tmp_path / "bad.yaml"
    bad.write_text(SERVICES + "---\nname: gamma\nimage: local\nreplicas: -3\n")
    refused = cli("apply", "--detach", "-f", str(bad), "--manager", addr)
    assert refused.returncode != 0 and "document 3" in refused.stderr, refused
    assert "gamma" not in {s["name"] for s in get_json(addr, "/v1/services")}
