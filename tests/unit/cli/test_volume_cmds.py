"""`warren volume ls | inspect | rm` through `main`, with the manager replaced by httpx.MockTransport:
what is asked, what is printed, and how `rm` waits for the node's worker (its clock is simulated)."""

from __future__ import annotations

import json

import httpx
import pytest

from warren.cli.main import main
from warren.client import ManagerClient
from warren.config import ClientSettings

ROW = {"name": "data", "node": "w1", "driver": "docker", "services": ["db"], "node_state": "ready",
       "node_availability": "active", "removal_pending": False, "remove_at": None, "created_at": 1.0,
       "version": 3}


class Manager:
    def __init__(self, *, node_state: str = "ready", removed_after: int | None = 2) -> None:
        self.requests: list[httpx.Request] = []
        self.node_state = node_state
        self.removed_after = removed_after  # GETs of the volume before it is gone (None: never)
        self.gets = 0
        self.now = 0.0

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        key = (request.method, request.url.path)
        if key == ("GET", "/v1/volumes"):
            logs = {**ROW, "name": "logs", "services": [], "removal_pending": True}
            return httpx.Response(200, json=[ROW, logs])
        if key == ("GET", "/v1/volumes/data"):
            self.gets += 1
            if self.removed_after is not None and self.gets > self.removed_after:
                gone = {"error": "not_found", "message": "no node has a volume named 'data'"}
                return httpx.Response(404, json=gone)
            node = {k: v for k, v in ROW.items() if k not in ("name", "services")}
            return httpx.Response(200, json={"name": "data", "services": [], "nodes": [
                {**node, "node_state": self.node_state, "removal_pending": True}]})
        if key == ("DELETE", "/v1/volumes/data"):
            return httpx.Response(202, json={"node": "w1", "name": "data", "status": "removal requested",
                                             "node_state": self.node_state})
        if key == ("DELETE", "/v1/volumes/busy"):
            message = "volume 'busy' is in use by service db: take it out of their specs or remove them first"
            return httpx.Response(409, json={"error": "conflict", "message": message})
        return httpx.Response(404, json={"error": "not_found", "message": f"no route {request.url.path}"})

    def sleep(self, seconds: float) -> None:
        self.now += seconds

    def connect(self, manager: str) -> ManagerClient:
        return ManagerClient(manager, transport=httpx.MockTransport(self.handle), sleep=self.sleep,
                             clock=lambda: self.now)


def run(m: Manager, capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(["--manager", "10.0.0.1:8080", *argv], connect=m.connect)
    out, err = capsys.readouterr()
    return status, out, err


def test_ls_and_list_show_each_volume_with_its_node_services_and_removal(
    capsys: pytest.CaptureFixture[str],
) -> None:
    for command in ("ls", "list"):
        status, out, err = run(Manager(), capsys, "volume", command)
        assert (status, err) == (0, "")
        lines = out.splitlines()
        assert lines[0].split() == ["NAME", "NODE", "DRIVER", "SERVICES", "NODE", "STATE", "REMOVAL"]
        assert lines[1].split() == ["data", "w1", "docker", "db", "ready", "-"]
        assert lines[2].split() == ["logs", "w1", "docker", "-", "ready", "pending"]
    status, out, _ = run(Manager(), capsys, "volume", "ls", "-o", "json")
    assert status == 0 and json.loads(out)[0] == ROW


def test_inspect_prints_the_volume(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(Manager(), capsys, "volume", "inspect", "data", "-o", "json")
    assert status == 0 and json.loads(out)["nodes"][0]["node"] == "w1"
    status, _, err = run(Manager(), capsys, "volume", "inspect", "nope")
    assert status == 1 and "no route" in err


def test_rm_waits_until_the_worker_removed_it(capsys: pytest.CaptureFixture[str]) -> None:
    m = Manager(removed_after=2)
    status, out, err = run(m, capsys, "volume", "rm", "data", "--node", "w1")
    assert (status, out, err) == (0, "Volume data removed from node w1\n", "")
    assert m.requests[0].method == "DELETE" and m.requests[0].url.params["node"] == "w1"
    assert m.gets == 3 and 0 < m.now < ClientSettings().volume_remove_wait_s
    status, out, _ = run(Manager(removed_after=0), capsys, "volume", "rm", "data", "-o", "json")
    assert status == 0 and json.loads(out)["status"] == "removed"


def test_rm_of_a_volume_on_a_down_node_says_when_it_goes(capsys: pytest.CaptureFixture[str]) -> None:
    m = Manager(node_state="down", removed_after=None)
    status, out, err = run(m, capsys, "volume", "rm", "data")
    assert (status, err) == (0, "")
    assert out == "removal requested; node w1 is down, it removes the volume when it is back\n"
    assert m.gets == 0 and "node" not in m.requests[0].url.params


def test_rm_says_so_when_the_node_goes_down_while_it_waits(capsys: pytest.CaptureFixture[str]) -> None:
    m = Manager(removed_after=None)
    original = m.handle

    def going_down(request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            m.node_state = "down"
        return original(request)

    m.handle = going_down  # type: ignore[method-assign]
    status, out, err = run(m, capsys, "volume", "rm", "data")
    assert (status, err) == (0, "")
    assert out == "removal requested; node w1 is down, it removes the volume when it is back\n"
    assert m.gets == 1
    m = Manager(node_state="joining", removed_after=None)
    status, out, _ = run(m, capsys, "volume", "rm", "data", "-o", "json")
    assert status == 0 and json.loads(out)["node_state"] == "joining"
    assert json.loads(out)["status"] == "removal requested"


def test_rm_gives_up_after_the_bounded_wait_with_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    m = Manager(removed_after=None)
    status, out, err = run(m, capsys, "volume", "rm", "data")
    limit = ClientSettings().volume_remove_wait_s
    assert status == 1 and out == ""
    assert f"node w1 has not removed volume data within {limit:g} s" in err
    assert limit <= m.now < limit + 1


def test_rm_of_a_volume_in_use_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run(Manager(), capsys, "volume", "rm", "busy")
    assert status == 1 and out == ""
    assert "in use by service db" in err
