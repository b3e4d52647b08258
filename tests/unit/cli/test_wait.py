"""`service create|update|scale|rollback` wait for their change to converge (warren.cli.waiting, judged
by warren.cli.converge), against a FakeManager whose answers move on at each poll."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.unit.cli.fake_api import NOW, FakeManager, run
from warren.cli import waiting
from warren.cli.converge import Change, assess
from warren.client import ManagerClient
from warren.config import ClientSettings
from warren.errors import NotConvergedError

DIGEST, OLD = "new-digest", "old-digest"
SPEC: dict[str, Any] = {"image": "nginx:1.28", "replicas": 2, "mode": "replicated",
                        "restart": {"condition": "any", "delay_s": 0.0, "max_attempts": 0}}
SERVICE: dict[str, Any] = {"id": "svc-1", "name": "web", "spec": SPEC, "version": 20, "created_at": NOW - 600,
                           "updated_at": NOW, "update_status": None, "has_previous": True,
                           "replicas_running": 0, "replicas_desired": 2, "spec_digest": DIGEST}


def task(slot: int, state: str, *, digest: str = DIGEST, desired: str = "running", health: str = "none",
         message: str = "", created: float = NOW + 1) -> dict[str, Any]:
    return {"id": f"t{slot}-{state}-{digest[:3]}", "name": f"web.{slot}", "slot": slot, "node": "worker-1",
            "service_id": "svc-1", "service_name": "web", "desired_state": desired, "state": state,
            "message": message, "health": health, "container_id": None, "exit_code": None,
            "spec_digest": digest, "created_at": created, "updated_at": created, "started_at": None,
            "version": 21}


def polls(*steps: tuple[dict[str, Any], list[dict[str, Any]]]) -> dict[tuple[str, str], Any]:
    """Routes answering the service and its tasks: each step once, in order, the last one from then on."""
    remaining: Iterator[tuple[dict[str, Any], list[dict[str, Any]]]] = iter(steps)
    current: list[tuple[dict[str, Any], list[dict[str, Any]]]] = [steps[0]]

    def service(request: httpx.Request) -> httpx.Response:
        current[0] = next(remaining, current[0])
        return httpx.Response(200, json=current[0][0])

    def tasks(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=current[0][1])

    return {("GET", "/v1/services/web"): service, ("GET", "/v1/services/web/tasks"): tasks}


def scaled(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json={**SERVICE, "spec": {**SPEC, **json.loads(request.content)}})


def test_scale_waits_until_the_tasks_run_and_reports_changes_once_each(
        capsys: pytest.CaptureFixture[str]) -> None:
    fake = FakeManager({("PATCH", "/v1/services/web"): scaled, **polls(
        (SERVICE, []),
        (SERVICE, [task(1, "starting"), task(2, "pending", message="no node has 2 CPUs free")]),
        (SERVICE, [task(1, "starting"), task(2, "pending", message="no node has 2 CPUs free")]),
        (SERVICE, [task(1, "running"), task(2, "running")]),
    )})
    assert run(fake, "service", "scale", "web", "2") == 0
    captured = capsys.readouterr()
    assert captured.out == "Service web scaled to 2 replicas\n"  # stdout: as with --detach
    assert captured.err.splitlines() == [
        "web: 0/2 running",
        "web: 0/2 running, 1 starting, 1 pending: no node has 2 CPUs free",
        "web: converged: 2/2 running",
    ]


def test_detach_returns_once_the_change_is_made(capsys: pytest.CaptureFixture[str]) -> None:
    fake = FakeManager({("PATCH", "/v1/services/web"): scaled, **polls((SERVICE, []))})
    assert run(fake, "service", "scale", "--detach", "web", "2") == 0
    assert [r.method for r in fake.requests] == ["PATCH"]
    assert capsys.readouterr().err == ""


def test_a_paused_update_fails_with_its_reason_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    paused = {**SERVICE, "update_status": {"state": "paused", "spec_digest": DIGEST,
                                           "message": "update paused: task t1 failed: health check failed"}}
    fake = FakeManager({("POST", "/v1/services/web/rollback"): SERVICE, **polls(
        ({**SERVICE, "update_status": {"state": "updating", "spec_digest": DIGEST}},
         [task(1, "running", digest=OLD, created=NOW - 100)]),
        (paused, [task(1, "failed"), task(1, "running", digest=OLD, created=NOW - 100)]),
    )})
    assert run(fake, "service", "rollback", "web") == 1
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "web: 1/2 running, update: 0 of 2 on the new spec"
    assert err[-1] == ("warren: service web did not converge: update paused: task t1 failed: "
                       "health check failed")


def test_an_automatic_rollback_is_a_failure_of_the_update() -> None:
    rolled = {**SERVICE, "version": 21, "update_status": {
        "state": "rollback_started",
        "message": "update failed (task t1 failed: exit status 1); rolling back"}}
    verdict = assess(rolled, [], Change("update", "web", 20, NOW), failures=3)
    assert (verdict.state, verdict.reason) == (
        "failed", "update failed (task t1 failed: exit status 1); rolling back")
    other = assess({**SERVICE, "version": 22}, [], Change("update", "web", 20, NOW), failures=3)
    assert other.state == "failed" and "changed again meanwhile" in other.reason
    behind = assess({**SERVICE, "version": 19}, [], Change("update", "web", 20, NOW), failures=3)
    assert behind.state == "waiting"


def test_tasks_that_keep_failing_fail_the_wait() -> None:
    change = Change("create", "web", 20, NOW)
    failing = [task(1, "failed", message="exit status 1", created=NOW + i) for i in range(2)]
    assert assess(SERVICE, failing, change, failures=3).state == "waiting"
    third = task(2, "failed", message="exit status 1", created=NOW + 5)
    verdict = assess(SERVICE, [*failing, third], change, failures=3)
    assert (verdict.state, verdict.reason) == ("failed", "task web.2 failed: exit status 1 (3 failures)")
    # Failures from before the change do not count; with restart condition none, one is enough.
    assert assess(SERVICE, [task(1, "failed", created=NOW - 5)] * 3, change, failures=3).state == "waiting"
    never = {**SERVICE, "spec": {**SPEC, "restart": {"condition": "none"}}}
    assert assess(never, [task(1, "failed")], change, failures=3).state == "failed"


def test_convergence_needs_health_the_new_spec_and_no_task_stopping() -> None:
    change = Change("update", "web", 20, NOW)
    healthy = [task(1, "running", health="healthy"), task(2, "running", health="healthy")]
    assert assess(SERVICE, healthy, change, failures=3).state == "converged"
    checking = [task(1, "running", health="healthy"), task(2, "running", health="starting")]
    assert assess(SERVICE, checking, change, failures=3).summary == "2/2 running, 1 starting"
    old_left = [*healthy, task(3, "running", digest=OLD)]
    assert assess(SERVICE, old_left, change, failures=3).state == "waiting"
    stopping = [*healthy, task(3, "running", desired="shutdown")]
    assert assess(SERVICE, stopping, change, failures=3).summary == "2/2 running, 1 stopping"
    rolling = {**SERVICE, "update_status": {"state": "updating", "spec_digest": DIGEST}}
    assert assess(rolling, healthy, change, failures=3).state == "waiting"
    done = {**SERVICE, "update_status": {"state": "completed", "spec_digest": DIGEST}}
    assert assess(done, healthy, change, failures=3).state == "converged"


def _client(fake: FakeManager, clock: list[float], *, interrupt_after: int | None = None) -> ManagerClient:
    def sleep(seconds: float) -> None:
        clock[0] += seconds
        if interrupt_after is not None and clock[0] >= interrupt_after:
            raise KeyboardInterrupt

    return ManagerClient("127.0.0.1:8080", transport=httpx.MockTransport(fake.handle), sleep=sleep,
                         clock=lambda: clock[0])


def test_a_task_no_node_can_run_is_given_up_on_after_wait_pending_s() -> None:
    pending = [task(1, "pending", message="no node matches node.labels.zone==eu")]
    fake = FakeManager(polls((SERVICE, pending)))
    clock = [0.0]
    settings = ClientSettings(wait_poll_s=1.0, wait_pending_s=10.0)
    with pytest.raises(NotConvergedError) as raised:
        waiting.wait(_client(fake, clock), Change("create", "web", 20, NOW), settings=settings,
                     out=io.StringIO(), live=False)
    assert str(raised.value).startswith(
        "service web did not converge: gave up after 10s: no node can run web.1: no node matches "
        "node.labels.zone==eu; the service stays")
    assert clock[0] == 10.0


def test_ctrl_c_stops_waiting_only(capsys: pytest.CaptureFixture[str]) -> None:
    fake = FakeManager(polls((SERVICE, [task(1, "starting")])))
    clock = [0.0]
    out = io.StringIO()
    status = waiting.wait(_client(fake, clock, interrupt_after=2), Change("scale", "web", 20, NOW),
                          settings=ClientSettings(wait_poll_s=1.0), out=out, live=True)
    assert status == 130
    assert capsys.readouterr().err == ("warren: stopped waiting; the change to service web goes on in the "
                                       "background (see 'warren service ps web')\n")
    assert [r.method for r in fake.requests] == ["GET"] * 4  # nothing undone: no write


def test_a_terminal_gets_one_line_redrawn_and_control_characters_escaped() -> None:
    fake = FakeManager(polls(
        (SERVICE, [task(1, "pending", message="\x1b[2Jgone")]),
        (SERVICE, [task(1, "running"), task(2, "running")]),
    ))
    out = io.StringIO()
    assert waiting.wait(_client(fake, [0.0]), Change("create", "web", 20, NOW), out=out, live=True) == 0
    text = out.getvalue()
    assert text.count("\r\x1b[K") == 2 and text.endswith("web: converged: 2/2 running\n")
    assert "\\x1b[2Jgone" in text and text.count("\x1b") == 2  # only our own erase-line sequences


def test_update_switches_the_mode(capsys: pytest.CaptureFixture[str]) -> None:
    def patched(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={**SERVICE, "spec": {**SPEC, **json.loads(request.content)}})

    fake = FakeManager({("GET", "/v1/services/web"): SERVICE, ("PATCH", "/v1/services/web"): patched})
    assert run(fake, "service", "update", "-d", "web", "--mode", "global") == 0
    assert fake.body() == {"mode": "global"}
    assert capsys.readouterr().out == ("Service web updated (version 20); every task is replaced by one of "
                                       "global mode\n")
    assert run(fake, "service", "update", "-d", "web", "--mode", "global", "--replicas", "2") == 2
    assert "--replicas does not apply to a global service" in capsys.readouterr().err
    assert run(fake, "service", "update", "-d", "web", "--mode", "replicated") == 0  # already: no PATCH
    assert [r.method for r in fake.requests].count("PATCH") == 1




def test_apply_waits_for_each_service_it_changed(tmp_path: Any, capsys: pytest.CaptureFixture[str]) -> None:
    stack = tmp_path / "stack.yaml"
    stack.write_text("name: web\nimage: nginx:1.28\nreplicas: 2\n")
    # Restart condition none: one failure of a new task means the service will not converge by itself.
    never = {**SERVICE, "spec": {**SPEC, "restart": {"condition": "none"}}}
    fake = FakeManager({("GET", "/v1/services"): [], ("POST", "/v1/services"): never, **polls(
        (never, [task(1, "starting"), task(2, "running")]),
        (never, [task(1, "failed", message="exit status 2"), task(2, "running")]),
    )})
    assert run(fake, "apply", "-f", str(stack)) == 1
    captured = capsys.readouterr()
    assert captured.out == "service/web created\n"
    assert captured.err.splitlines()[-1] == ("warren: service web did not converge: task web.1 failed: "
                                             "exit status 2")
    detached = FakeManager({("GET", "/v1/services"): [], ("POST", "/v1/services"): never})
    assert run(detached, "apply", "-d", "-f", str(stack)) == 0
    assert [r.method for r in detached.requests] == ["GET", "POST"]


def test_a_mode_switch_converges_only_on_tasks_of_the_new_mode() -> None:
    # The mode is no task field: the digest stays, the slot tells a replicated task from a global one.
    switched = {**SERVICE, "spec": {**SPEC, "mode": "global"}, "replicas_desired": 1}
    change = Change("update", "web", 20, NOW)
    replicated = [task(1, "running", created=NOW - 100)]
    verdict = assess(switched, replicated, change, failures=3)
    assert verdict.state == "waiting"
    assert verdict.summary == "1/1 running (global), update: 0 of 1 on the new spec"
    per_node = {**task(1, "running"), "slot": None, "name": "web.worker-1"}
    stopping = {**replicated[0], "desired_state": "shutdown"}
    assert assess(switched, [stopping, per_node], change, failures=3).state == "waiting"
    stopped = {**stopping, "state": "shutdown"}
    assert assess(switched, [stopped, per_node], change, failures=3).state == "converged"
