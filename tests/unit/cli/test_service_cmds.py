"""`warren service create | update | rollback | list | inspect | ps | logs` through `main`, with the manager
replaced by httpx.MockTransport: flags into body fields, usage errors, merges, tables, log streams."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import yaml

from tests.unit.cli.fake_api import NOW, FakeManager, run, task
from warren.cli import service_cmds
from warren.formats import parse_size

SPEC: dict[str, Any] = {
    "image": "nginx:1.27", "driver": "docker", "command": None, "replicas": 3, "mode": "replicated",
    "env": {"TZ": "UTC", "DEBUG": "1"}, "labels": {"tier": "front"},
    "publish": [{"host": 8080, "container": 80, "protocol": "tcp"}],
    "resources": {"cpus": 0.5, "memory": None},
    "constraints": ["node.labels.zone==eu"],
    "restart": {"condition": "any", "delay_s": 0.0, "max_attempts": 0},
    # As a PATCH leaves it: only what was set (the manager may or may not fill in the defaults).
    "health": {"kind": "http", "port": 80, "path": "/healthz"},
    "update": {"parallelism": 2, "delay_s": 0.0, "order": "stop-first", "failure_action": "pause",
               "monitor_s": 2.0},
    "stop_timeout_s": 10.0,
}
WEB = {"id": "svc-1", "name": "web", "spec": SPEC, "version": 12, "created_at": NOW - 600,
       "updated_at": NOW - 60, "update_status": None, "has_previous": False,
       "replicas_running": 3, "replicas_desired": 3}


def created(request: httpx.Request) -> httpx.Response:
    body = json.loads(request.content)
    return httpx.Response(201, json={"id": "svc-9", "name": body["name"], "version": 7,
                                     "spec": {"replicas": 1, "mode": "replicated", **body}})


def patched(request: httpx.Request) -> httpx.Response:
    changes = json.loads(request.content)
    return httpx.Response(200, json={**WEB, "version": 13, "spec": {**SPEC, **changes}})


def web_manager(service: dict[str, Any] | None = None) -> FakeManager:
    return FakeManager({("GET", "/v1/services/web"): service or WEB, ("PATCH", "/v1/services/web"): patched})


# -- create -----------------------------------------------------------------------------------------

def test_every_create_flag_lands_in_its_body_field(capsys: pytest.CaptureFixture[str]) -> None:
    fake = FakeManager({("POST", "/v1/services"): created})
    argv = [
        "service", "create", "-d", "api", "--image", "api:2", "--command", "serve --port 80",
        "--replicas", "4",
        "--env", "A=1", "--env", "B=x=y", "--label", "tier=back", "--publish", "8080:80",
        "--publish", "5353:53/udp", "--driver", "docker", "--health-cmd", "curl -f http://localhost/",
        "--health-interval", "500ms", "--health-timeout", "1s", "--health-retries", "5",
        "--health-start-period", "1m", "--restart-policy", "on-failure", "--restart-delay", "2s",
        "--restart-max-attempts", "3", "--cpus", "1.5", "--memory", "512m",
        "--constraint", "node.labels.zone==eu", "--constraint", "node.role!=manager",
        "--update-parallelism", "2", "--update-delay", "10s", "--update-order", "start-first",
        "--update-failure-action", "rollback", "--update-monitor", "5s", "--stop-timeout", "1m30s",
    ]
    assert run(fake, *argv) == 0
    assert fake.body() == {
        "name": "api", "image": "api:2", "command": ["serve", "--port", "80"], "replicas": 4,
        "driver": "docker", "env": {"A": "1", "B": "x=y"}, "labels": {"tier": "back"},
        "publish": [{"host": 8080, "container": 80, "protocol": "tcp", "mode": "ingress"},
                    {"host": 5353, "container": 53, "protocol": "udp", "mode": "host"}],
        "constraints": ["node.labels.zone==eu", "node.role!=manager"],
        "stop_timeout_s": 90.0,
        "restart": {"condition": "on-failure", "delay_s": 2.0, "max_attempts": 3},
        "update": {"parallelism": 2, "delay_s": 10.0, "order": "start-first", "failure_action": "rollback",
                   "monitor_s": 5.0},
        "resources": {"cpus": 1.5, "memory": 512 * 2**20},
        "health": {"kind": "cmd", "cmd": ["curl", "-f", "http://localhost/"], "interval_s": 0.5,
                   "timeout_s": 1.0, "retries": 5, "start_period_s": 60.0},
    }
    assert capsys.readouterr().out == "Service api created (4 replicas, id svc-9)\n"


@pytest.mark.parametrize(("flags", "health"), [
    (["--health-http", "8080/healthz"], {"kind": "http", "port": 8080, "path": "/healthz"}),
    (["--health-http", "80"], {"kind": "http", "port": 80, "path": "/"}),
    (["--health-http", "80/"], {"kind": "http", "port": 80, "path": "/"}),
    (["--health-tcp", "6379", "--health-retries", "2"], {"kind": "tcp", "port": 6379, "retries": 2}),
])
def test_create_health_kinds(flags: list[str], health: dict[str, Any]) -> None:
    fake = FakeManager({("POST", "/v1/services"): created})
    assert run(fake, "service", "create", "-d", "web", "--image", "nginx", *flags) == 0
    assert fake.body()["health"] == health


def test_process_driver_service(capsys: pytest.CaptureFixture[str]) -> None:
    fake = FakeManager({("POST", "/v1/services"): created})
    assert run(fake, "service", "create", "-d", "tick", "--driver", "process", "--image", "none",
               "--command", "sh -c 'sleep 5'", "--mode", "global") == 0
    assert fake.body() == {"name": "tick", "image": "none", "driver": "process", "mode": "global",
                           "command": ["sh", "-c", "sleep 5"]}
    assert capsys.readouterr().out == "Service tick created (one task per node, id svc-9)\n"


@pytest.mark.parametrize(("text", "size"), [
    ("512m", 512 * 2**20), ("1g", 2**30), ("256MiB", 256 * 2**20), ("1.5GB", 3 * 2**29), ("4096", 4096),
    ("64k", 65536), ("2 GiB", 2**31), (".5g", 2**29), ("100b", 100), (1048576, 1048576),
])
def test_sizes_are_binary(text: str | int, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize(("flags", "expected"), [
    (["--publish", "99999:80"],
     "argument --publish: published port '99999' is not a port number from 1 to 65535"),
    (["--publish", "8080:0"], "target port '0' is not a port number"),
    (["--publish", "80"], "argument --publish: expected PUBLISHED:TARGET[/tcp|udp] or mode=ingress|host"),
    (["--publish", "80:80/sctp"], "protocol 'sctp' in '80:80/sctp' is neither tcp nor udp"),
    (["--publish", "80:80", "--publish", "80:8080"], "the same host port is published twice"),
    (["--memory", "12q"], "argument --memory: invalid size '12q'"),
    (["--memory", "1k"], "argument --memory: Input should be greater than or equal to 4194304"),
    (["--cpus", "lots"], "argument --cpus: expected a number"),
    (["--cpus", "0"], "argument --cpus: Input should be greater than 0"),
    (["--health-cmd", "true", "--health-tcp", "80"],
     "argument --health-tcp: not allowed with argument --health-cmd"),
    (["--health-http", "80/x", "--health-cmd", "true"], "not allowed with argument --health-http"),
    (["--health-tcp", "http"], "argument --health-tcp: port 'http' is not a port number"),
    (["--health-retries", "3"], "a health check needs its kind: give --health-cmd, --health-http or"),
    (["--health-tcp", "80", "--health-retries", "0"], "argument --health-retries: expected a whole number"),
    (["--health-tcp", "80", "--health-interval", "0s"], "--health-interval: Input should be greater"),
    (["--health-tcp", "80", "--health-timeout", "5"], "argument --health-timeout: invalid duration '5'"),
    (["--health-cmd", "''"], "argument --health-cmd: empty command"),
    (["--constraint", "nonsense"], "argument --constraint: expected node.labels.KEY==VALUE"),
    (["--constraint", "node.labels.zone=eu"], "argument --constraint: expected node.labels.KEY==VALUE"),
    (["--restart-policy", "always"], "argument --restart-policy: invalid choice: 'always'"),
    (["--restart-delay", "soon"], "argument --restart-delay: invalid duration 'soon'"),
    (["--update-order", "random"], "argument --update-order: invalid choice: 'random'"),
    (["--update-parallelism", "0"], "argument --update-parallelism: expected a whole number of 1 or more"),
    (["--stop-timeout", "0s"], "argument --stop-grace-period: Input should be greater than 0"),
    (["--driver", "process"], "a process-driver service needs command"),
    (["--driver", "vm"], "argument --driver: invalid choice: 'vm'"),
    (["--env", "1X=y"], "argument --env: String should match pattern"),
])
def test_bad_create_flags_are_usage_errors(
    flags: list[str], expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    fake = FakeManager({("POST", "/v1/services"): created})
    assert run(fake, "service", "create", "-d", "web", "--image", "nginx", *flags) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("warren: ") and expected in lines[0], lines[0]
    assert lines[0].endswith("(see 'warren service create --help')")
    assert fake.requests == [], "nothing is sent for a bad command line"


def test_bad_service_name_is_refused_before_sending(capsys: pytest.CaptureFixture[str]) -> None:
    fake = FakeManager({("POST", "/v1/services"): created})
    assert run(fake, "service", "create", "-d", "Web_1", "--image", "nginx") == 2
    assert capsys.readouterr().err.startswith(
        "warren: argument NAME: a service name is a DNS name (tasks find the service by it): 1 to 63 "
        "lowercase letters, digits and '-', beginning and ending with a letter or digit (got 'Web_1')")
    assert fake.requests == []


# -- update -----------------------------------------------------------------------------------------

def test_update_health_retries_alone_keeps_the_current_kind(capsys: pytest.CaptureFixture[str]) -> None:
    fake = web_manager()
    assert run(fake, "service", "update", "-d", "web", "--health-retries", "5") == 0
    assert fake.requests[0].method == "GET" and fake.requests[0].url.params["consistent"] == "true"
    patch = fake.requests[-1]
    assert patch.method == "PATCH" and patch.headers["If-Match"] == "12"
    assert fake.body() == {"health": {"kind": "http", "port": 80, "path": "/healthz", "interval_s": 5.0,
                                      "timeout_s": 2.0, "retries": 5, "start_period_s": 0.0}}
    assert capsys.readouterr().out == "Service web updated (version 13); rolling out new tasks, 2 at a time\n"


def test_update_switching_the_health_kind_keeps_the_timings() -> None:
    current = {**WEB, "spec": {**SPEC, "health": {"kind": "http", "port": 80, "path": "/healthz",
                                                  "interval_s": 1.0, "retries": 7}}}
    fake = web_manager(current)
    assert run(fake, "service", "update", "-d", "web", "--health-cmd", "pgrep nginx",
               "--health-timeout", "3s") == 0
    health = {"kind": "cmd", "cmd": ["pgrep", "nginx"], "path": "/", "interval_s": 1.0, "timeout_s": 3.0,
              "retries": 7, "start_period_s": 0.0}
    assert fake.body() == {"health": health}


def test_update_health_timing_without_a_health_check_says_what_to_add(
    capsys: pytest.CaptureFixture[str]
) -> None:
    fake = web_manager({**WEB, "spec": {**SPEC, "health": None}})
    assert run(fake, "service", "update", "-d", "web", "--health-interval", "2s") == 1
    assert capsys.readouterr().err == (
        "warren: service web has no health check to change: "
        "give --health-cmd, --health-http or --health-tcp\n"
    )
    assert [r.method for r in fake.requests] == ["GET"]


def test_update_nested_parts_merge_over_the_current_ones() -> None:
    fake = web_manager()
    assert run(fake, "service", "update", "-d", "web", "--memory", "1g", "--restart-delay", "5s",
               "--update-order", "start-first") == 0
    assert fake.body() == {
        "resources": {"cpus": 0.5, "memory": 2**30},
        "restart": {"condition": "any", "delay_s": 5.0, "max_attempts": 0},
        "update": {"parallelism": 2, "delay_s": 0.0, "order": "start-first", "failure_action": "pause",
                   "monitor_s": 2.0},
    }


def test_update_maps_and_lists_add_and_remove() -> None:
    fake = web_manager()
    assert run(fake, "service", "update", "-d", "web", "--env", "TZ=CET", "--env", "NEW=x",
               "--env-rm", "DEBUG",
               "--publish", "8443:443", "--publish", "8080:8080", "--publish-rm", "9999/udp",
               "--constraint", "node.labels.disk==ssd", "--constraint-rm", "node.labels.zone==eu",
               "--label-rm", "tier") == 0
    assert fake.body() == {
        "env": {"TZ": "CET", "NEW": "x"},
        "labels": {},
        "publish": [{"host": 8080, "container": 8080, "protocol": "tcp", "mode": "ingress"},
                    {"host": 8443, "container": 443, "protocol": "tcp", "mode": "ingress"}],
        "constraints": ["node.labels.disk==ssd"],
    }


def test_update_keeps_a_stored_port_without_a_mode_in_host_mode() -> None:
    # SPEC's 8080 was stored before ingress existed (no mode: host); adding a port rewrites the list,
    # which must not turn 8080 into an ingress port.
    fake = web_manager()
    assert run(fake, "service", "update", "-d", "web",
               "--publish", "mode=ingress,published=8443,target=443") == 0
    assert fake.body() == {"publish": [
        {"host": 8080, "container": 80, "protocol": "tcp", "mode": "host"},
        {"host": 8443, "container": 443, "protocol": "tcp", "mode": "ingress"},
    ]}
    fake = web_manager()
    assert run(fake, "service", "update", "-d", "web", "--publish", "8080:80") == 0  # now as ingress
    assert fake.body() == {"publish": [{"host": 8080, "container": 80, "protocol": "tcp", "mode": "ingress"}]}


def test_update_of_replicas_and_labels_replaces_no_task(capsys: pytest.CaptureFixture[str]) -> None:
    fake = web_manager()
    assert run(fake, "service", "update", "-d", "web", "--replicas", "5", "--label", "team=ops") == 0
    assert fake.body() == {"replicas": 5, "labels": {"tier": "front", "team": "ops"}}
    assert capsys.readouterr().out == "Service web updated (version 13); no task changes\n"


def test_update_sends_only_what_really_changes(capsys: pytest.CaptureFixture[str]) -> None:
    fake = web_manager()
    assert run(fake, "service", "update", "-d", "web", "--image", "nginx:1.28", "--replicas", "3",
               "--health-http", "80/healthz", "--env", "TZ=UTC") == 0
    assert fake.body() == {"image": "nginx:1.28"}


def test_update_that_changes_nothing_writes_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    fake = web_manager()
    assert run(fake, "service", "update", "-d", "web", "--image", "nginx:1.27", "--cpus", "0.5") == 0
    assert [r.method for r in fake.requests] == ["GET"]
    assert capsys.readouterr().out == "Service web unchanged (version 12): nothing to change\n"


def test_update_json_output_is_the_service(capsys: pytest.CaptureFixture[str]) -> None:
    fake = web_manager()
    assert run(fake, "service", "update", "-d", "web", "--image", "nginx:1.28", "-o", "json") == 0
    assert json.loads(capsys.readouterr().out)["spec"]["image"] == "nginx:1.28"


def test_update_lost_race_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    conflict = httpx.Response(409, json={"error": "conflict", "message": "service web is at version 14"})
    fake = FakeManager({("GET", "/v1/services/web"): WEB, ("PATCH", "/v1/services/web"): lambda r: conflict})
    assert run(fake, "service", "update", "-d", "web", "--image", "nginx:1.28") == 1
    assert capsys.readouterr().err == "warren: service web is at version 14\n"


@pytest.mark.parametrize(("flags", "expected"), [
    (["--memory", "12q"], "argument --memory: invalid size"),
    (["--publish-rm", "80/sctp"], "argument --publish-rm: expected PUBLISHED[/tcp|udp]"),
    (["--health-cmd", "x", "--health-http", "80"], "not allowed with argument --health-cmd"),
])
def test_bad_update_flags_are_usage_errors(
    flags: list[str], expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    fake = web_manager()
    assert run(fake, "service", "update", "-d", "web", *flags) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and expected in err, err
    assert fake.requests == []


def test_update_of_an_invalid_value_names_the_flag(capsys: pytest.CaptureFixture[str]) -> None:
    fake = web_manager()
    assert run(fake, "service", "update", "-d", "web", "--memory", "1m") == 2
    assert capsys.readouterr().err == (
        "warren: argument --memory: Input should be greater than or equal to 4194304 "
        "(see 'warren service update --help')\n"
    )
    assert [r.method for r in fake.requests] == ["GET"]


def test_rollback(capsys: pytest.CaptureFixture[str]) -> None:
    fake = FakeManager({("POST", "/v1/services/web/rollback"): lambda r: httpx.Response(200, json=WEB)})
    assert run(fake, "service", "rollback", "-d", "web") == 0
    assert capsys.readouterr().out == "Service web rolled back to its previous spec\n"
    nothing = FakeManager({("POST", "/v1/services/web/rollback"): lambda r: httpx.Response(
        409, json={"error": "conflict", "message": "service web has no previous spec"})})
    assert run(nothing, "service", "rollback", "-d", "web") == 1
    assert capsys.readouterr().err == "warren: service web has no previous spec\n"


# -- list, inspect ----------------------------------------------------------------------------------

def test_list_shows_the_update_column_while_an_update_runs(capsys: pytest.CaptureFixture[str]) -> None:
    services = [
        {**WEB, "replicas_running": 2, "update_status": {"state": "updating", "started_at": NOW}},
        {**WEB, "name": "api", "update_status": {"state": "paused", "message": "task api.2 failed"}},
        {**WEB, "name": "db", "update_status": {"state": "completed"}},
        {**WEB, "name": "old", "update_status": {"state": "rollback_started"}},
    ]
    assert run(FakeManager({("GET", "/v1/services"): services}), "service", "list") == 0
    # WEB publishes a port (stored without a mode: host), so the PORTS column shows too.
    assert capsys.readouterr().out == (
        "NAME  REPLICAS  IMAGE       VERSION  PORTS                  UPDATE\n"
        "web   2/3       nginx:1.27  12       *:8080->80/tcp (host)  updating\n"
        "api   3/3       nginx:1.27  12       *:8080->80/tcp (host)  paused\n"
        "db    3/3       nginx:1.27  12       *:8080->80/tcp (host)  -\n"
        "old   3/3       nginx:1.27  12       *:8080->80/tcp (host)  rolling back\n"
    )


def test_list_and_inspect_show_each_published_port_with_its_mode(capsys: pytest.CaptureFixture[str]) -> None:
    ports = [{"host": 8080, "container": 80, "protocol": "tcp", "mode": "ingress"},
             {"host": 5353, "container": 53, "protocol": "udp", "mode": "host"}]
    web = {**WEB, "spec": {**SPEC, "publish": ports}}
    quiet = {**WEB, "name": "quiet", "spec": {**SPEC, "publish": []}}
    assert run(FakeManager({("GET", "/v1/services"): [web, quiet]}), "service", "list") == 0
    assert capsys.readouterr().out == (
        "NAME   REPLICAS  IMAGE       VERSION  PORTS\n"
        "web    3/3       nginx:1.27  12       *:8080->80/tcp (ingress), *:5353->53/udp (host)\n"
        "quiet  3/3       nginx:1.27  12       -\n"
    )
    assert run(FakeManager({("GET", "/v1/services/web"): web}), "service", "inspect", "web") == 0
    rows = dict(line.split(None, 1) for line in capsys.readouterr().out.splitlines())
    assert rows["spec.publish"] == "*:8080->80/tcp (ingress), *:5353->53/udp (host)"
    fake = FakeManager({("GET", "/v1/services/web"): web})
    assert run(fake, "service", "inspect", "web", "-o", "json") == 0
    assert json.loads(capsys.readouterr().out)["spec"]["publish"] == ports  # machine formats: as stored


def test_inspect_shows_the_update_status(capsys: pytest.CaptureFixture[str]) -> None:
    paused = {**WEB, "update_status": {"state": "paused", "message": "task web.2 failed its health check",
                                       "started_at": NOW}}
    assert run(FakeManager({("GET", "/v1/services/web"): paused}), "service", "inspect", "web") == 0
    rows = dict(line.split(None, 1) for line in capsys.readouterr().out.splitlines())
    assert rows["update_status.state"] == "paused"
    assert rows["update_status.message"] == "task web.2 failed its health check"
    assert rows["update_status.started_at"] == "2026-09-21T14:13:20Z"
    quiet = {k: v for k, v in WEB.items() if k != "update_status"}
    assert run(FakeManager({("GET", "/v1/services/web"): quiet}), "service", "inspect", "web") == 0
    rows = dict(line.split(None, 1) for line in capsys.readouterr().out.splitlines())
    assert rows["update_status"] == "-"


# -- ps ---------------------------------------------------------------------------------------------

PENDING_REASON = (
    "no node can run this task: 3 nodes: worker-1 lacks memory (needs 2GiB, 1.2GiB free), worker-2 is "
    "drained, worker-3 does not match node.labels.zone==eu"
)


TASKS = [
    task("a1" * 16, 1, "running", health="healthy", created=50),
    task("a0" * 16, 1, "failed", desired="shutdown", age=300, message="exited with code 1", created=20),
    task("a9" * 16, 1, "failed", desired="shutdown", age=4000, message="exited with code 2", created=10),
    task("b1" * 16, 2, "pending", node=None, age=5, message=PENDING_REASON, created=60),
    task("c1" * 16, 3, "running", age=7200 * 30, health="starting", created=1),
    task("c0" * 16, 3, "shutdown", desired="shutdown", age=7200, message="stopped by a rolling update"),
]


@pytest.fixture(autouse=True)
def fixed_now(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(service_cmds, "now", lambda: NOW)


def test_ps_shows_current_tasks_and_the_latest_finished_per_slot(capsys: pytest.CaptureFixture[str]) -> None:
    fake = FakeManager({("GET", "/v1/services/web/tasks"): TASKS})
    assert run(fake, "service", "ps", "web") == 0
    assert capsys.readouterr().out == (
        "ID            NAME       NODE      DESIRED   STATE            HEALTH    MESSAGE\n"
        "a1a1a1a1a1a1  web.1      worker-1  running   running 15s ago  healthy   -\n"
        "a0a0a0a0a0a0   \\_ web.1  worker-1  shutdown  failed 5m ago    -         exited with code 1\n"
        f"b1b1b1b1b1b1  web.2      -         running   pending 5s ago   -         {PENDING_REASON}\n"
        "c1c1c1c1c1c1  web.3      worker-1  running   running 2d ago   starting  -\n"
        "c0c0c0c0c0c0   \\_ web.3  worker-1  shutdown  shutdown 2h ago  -         "
        "stopped by a rolling update\n"
    )


def test_ps_all_shows_the_whole_history(capsys: pytest.CaptureFixture[str]) -> None:
    fake = FakeManager({("GET", "/v1/services/web/tasks"): TASKS})
    assert run(fake, "service", "ps", "web", "--all", "--no-trunc") == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 + len(TASKS)
    assert lines[3].startswith("a9" * 16 + "   \\_ web.1") and "failed 66m ago" in lines[3]
    assert lines[1].startswith("a1" * 16 + "  web.1")


def test_ps_json_has_the_tasks_whole(capsys: pytest.CaptureFixture[str]) -> None:
    fake = FakeManager({("GET", "/v1/services/web/tasks"): TASKS})
    assert run(fake, "service", "ps", "web", "-o", "json") == 0
    shown = json.loads(capsys.readouterr().out)
    assert [t["id"][:2] for t in shown] == ["a1", "a0", "b1", "c1", "c0"]
    assert shown[2]["message"] == PENDING_REASON
    assert run(fake, "service", "ps", "web", "-a", "-o", "yaml") == 0
    assert len(yaml.safe_load(capsys.readouterr().out)) == len(TASKS)


def test_ps_cuts_only_very_long_messages_in_tables(capsys: pytest.CaptureFixture[str]) -> None:
    long = "worker said: " + "x" * 400 + "\nsecond line"
    fake = FakeManager({("GET", "/v1/services/web/tasks"): [task("d1" * 16, 1, "failed", message=long)]})
    assert run(fake, "service", "ps", "web") == 0
    row = capsys.readouterr().out.splitlines()[1]
    assert row.endswith("worker said: " + "x" * (service_cmds.MESSAGE_WIDTH - 14) + "…")
    assert run(fake, "service", "ps", "web", "--no-trunc") == 0
    assert capsys.readouterr().out.splitlines()[1].endswith("x" * 400 + " second line")
    assert run(fake, "service", "ps", "web", "-o", "json") == 0
    assert json.loads(capsys.readouterr().out)[0]["message"] == long


def test_ps_of_a_global_service_groups_by_node(capsys: pytest.CaptureFixture[str]) -> None:
    tasks = [
        task("e1" * 16, None, "running", node="worker-2", created=30),
        task("e0" * 16, None, "failed", node="worker-2", desired="shutdown", message="oom", created=10),
        task("f1" * 16, None, "running", node="worker-1"),
    ]
    assert run(FakeManager({("GET", "/v1/services/web/tasks"): tasks}), "service", "ps", "web") == 0
    names = [line.split("  ")[1].strip() for line in capsys.readouterr().out.splitlines()[1:]]
    assert names == ["web.worker-1", "web.worker-2", "\\_ web.worker-2"]


def test_ps_of_a_missing_service(capsys: pytest.CaptureFixture[str]) -> None:
    fake = FakeManager({("GET", "/v1/services/nope/tasks"): lambda r: httpx.Response(
        404, json={"error": "not_found", "message": "no service named 'nope'"})})
    assert run(fake, "service", "ps", "nope") == 1
    assert capsys.readouterr().err == "warren: no service named 'nope'\n"


# -- logs -------------------------------------------------------------------------------------------

def test_logs_are_printed_as_they_arrive(capsys: pytest.CaptureFixture[str]) -> None:
    printed_before_next_chunk: list[str] = []

    def chunks() -> Iterator[bytes]:
        yield b"web.1 | starting\n"
        printed_before_next_chunk.append(capsys.readouterr().out)
        yield "web.2 | caf\u00e9 ".encode()
        printed_before_next_chunk.append(capsys.readouterr().out)
        yield b"ready\n"

    fake = FakeManager({("GET", "/v1/services/web/logs"): lambda r: httpx.Response(
        200, content=chunks(), headers={"Content-Type": "text/plain; charset=utf-8"})})
    assert run(fake, "service", "logs", "web", "--follow", "--tail", "10") == 0
    assert printed_before_next_chunk == ["web.1 | starting\n", "web.2 | café "]
    assert capsys.readouterr().out == "ready\n"
    params = fake.requests[0].url.params
    assert dict(params) == {"follow": "true", "tail": "10"}


@pytest.mark.parametrize(("ref", "task_id"), [
    ("a1" * 16, "a1" * 16),  # a whole ID
    ("b1b1b1b1b1b1", "b1" * 16),  # cut as `ps` shows it
    ("web.1", "a1" * 16),  # the slot's current task
    ("web.9", "web.9"),  # unknown: the manager answers for it
])
def test_logs_of_one_task_by_id_prefix_or_name(ref: str, task_id: str) -> None:
    fake = FakeManager({("GET", "/v1/services/web/tasks"): TASKS,
                        ("GET", "/v1/services/web/logs"): lambda r: httpx.Response(200, text="x\n")})
    assert run(fake, "service", "logs", "web", "--task", ref, "--tail", "all") == 0
    assert dict(fake.requests[-1].url.params) == {"follow": "false", "task": task_id, "tail": "all"}


def test_an_ambiguous_task_prefix_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    fake = FakeManager({("GET", "/v1/services/web/tasks"): TASKS})
    assert run(fake, "service", "logs", "web", "--task", "a") == 1
    assert capsys.readouterr().err == "warren: task 'a' is ambiguous: it starts 3 task IDs; give more of it\n"
    assert run(fake, "service", "logs", "web", "--tail", "-3") == 2


def test_logs_without_follow(capsys: pytest.CaptureFixture[str]) -> None:
    fake = FakeManager({("GET", "/v1/services/web/logs"): lambda r: httpx.Response(200, text="a\nb\n")})
    assert run(fake, "service", "logs", "web") == 0
    assert capsys.readouterr().out == "a\nb\n"
    assert dict(fake.requests[0].url.params) == {"follow": "false"}


def test_logs_follow_the_redirect_to_the_leader(capsys: pytest.CaptureFixture[str]) -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.host == "10.0.0.2":  # a follower
            return httpx.Response(307, headers={
                "Location": "https://10.0.0.1:8080/v1/services/web/logs?follow=true&tail=5"})
        return httpx.Response(200, text="from the leader\n")

    fake = FakeManager({("GET", "/v1/services/web/logs"): handle})
    assert run(fake, "service", "logs", "web", "-f", "-n", "5", "--manager", "10.0.0.2:8080") == 0
    assert capsys.readouterr().out == "from the leader\n"
    assert [str(r.url) for r in fake.requests] == [
        "https://10.0.0.2:8080/v1/services/web/logs?follow=true&tail=5",
        "https://10.0.0.1:8080/v1/services/web/logs?follow=true&tail=5",
    ]


def test_ctrl_c_ends_logs_quietly_with_status_0(capsys: pytest.CaptureFixture[str]) -> None:
    def chunks() -> Iterator[bytes]:
        yield b"line 1\n"
        raise KeyboardInterrupt

    fake = FakeManager({("GET", "/v1/services/web/logs"): lambda r: httpx.Response(200, content=chunks())})
    assert run(fake, "service", "logs", "web", "--follow") == 0
    captured = capsys.readouterr()
    assert captured.out == "line 1\n" and captured.err == ""


def test_a_broken_log_stream_is_reported_and_not_sent_again(capsys: pytest.CaptureFixture[str]) -> None:
    def chunks() -> Iterator[bytes]:
        yield b"line 1\n"
        raise httpx.RemoteProtocolError("peer closed connection without sending complete message body")

    fake = FakeManager({("GET", "/v1/services/web/logs"): lambda r: httpx.Response(200, content=chunks())})
    assert run(fake, "service", "logs", "web", "--follow") == 1
    captured = capsys.readouterr()
    assert captured.out == "line 1\n"
    assert captured.err == (
        "warren: log stream from manager at 127.0.0.1:8080 broke off: "
        "peer closed connection without sending complete message body\n"
    )
    assert len(fake.requests) == 1


def test_logs_of_a_missing_task(capsys: pytest.CaptureFixture[str]) -> None:
    missing = httpx.Response(404, json={"error": "not_found", "message": "service web has no task 'zz'"})
    fake = FakeManager({("GET", "/v1/services/web/tasks"): TASKS,
                        ("GET", "/v1/services/web/logs"): lambda r: missing})
    assert run(fake, "service", "logs", "web", "--task", "zz") == 1
    assert capsys.readouterr().err == "warren: service web has no task 'zz'\n"


@pytest.mark.parametrize("argv", [
    ["service", "update", "--help"], ["service", "rollback", "--help"], ["service", "ps", "--help"],
    ["service", "logs", "--help"], ["node", "drain", "--help"], ["node", "activate", "--help"],
    ["apply", "--help"],
])
def test_new_commands_have_help(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert run(FakeManager({}), *argv) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: warren " + " ".join(argv[:-1]))


def test_create_help_states_defaults_and_units(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(FakeManager({}), "service", "create", "--help") == 0
    out = " ".join(capsys.readouterr().out.split())
    for text in ("(default 5s)", "(default 3)", "(default any)", "(default stop-first)", "(default pause)",
                 "k/m/g are binary (KiB/MiB/GiB)", "(default 10s)", "examples:"):
        assert text in out, text


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


# -- services ---------------------------------------------------------------------------------------

def test_service_create_sends_only_what_was_given(capsys: pytest.CaptureFixture[str]) -> None:
    fake = FakeManager({("POST", "/v1/services"): SERVICE})
    assert run(fake, "service", "create", "-d", "web", "--image", "nginx:1.27") == 0
    assert fake.body() == {"name": "web", "image": "nginx:1.27"}
    assert capsys.readouterr().out == "Service web created (3 replicas, id svc-1)\n"


def test_service_create_full(capsys: pytest.CaptureFixture[str]) -> None:
    fake = FakeManager({("POST", "/v1/services"): AGENT})
    assert run(fake, "service", "create", "-d", "agent", "--image", "alpine", "--mode", "global",
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
    assert run(fake, "service", "create", "-d", "web", "--image", "nginx", "--replicas", "2") == 1
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
    assert run(fake, "service", "scale", "-d", "web", "5") == 0
    assert fake.body() == {"replicas": 5}
    assert capsys.readouterr().out == "Service web scaled to 5 replicas\n"


def test_service_rm(capsys: pytest.CaptureFixture[str]) -> None:
    fake = FakeManager({("DELETE", "/v1/services/web"): {"removed": "web"}})
    assert run(fake, "service", "rm", "web", "-o", "json") == 0
    assert json.loads(capsys.readouterr().out) == {"removed": "web"}
    assert run(fake, "service", "rm", "web") == 0
    assert capsys.readouterr().out == "Service web removed\n"
