"""The CLI never hands the terminal a control character that came from a server or a worker: task
messages, node names, hostnames, labels, errors... are shown with visible escapes in tables and error
lines, JSON and YAML escape them as their formats do, and logs are escaped unless --raw."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
import yaml

from tests.unit.cli.fake_api import CLUSTER, FakeManager, run, task
from warren.cli.output import cell, to_json, to_yaml

HOSTILE = "x\x1b[2J\r\x07\x00\x9b31m\x7fy"
# What a terminal obeys: ESC (and the CSI it starts), CR, BEL, NUL, C1 CSI, DEL.
RAW = ("\x1b", "\r", "\x07", "\x00", "\x9b", "\x7f")


def assert_clean(text: str, *, lines_allowed: bool = True) -> None:
    for ch in RAW:
        assert ch not in text, (ch, text)
    if not lines_allowed:
        assert "\n" not in text.rstrip("\n")


def test_a_cell_escapes_every_control_character() -> None:
    assert cell(HOSTILE) == "x\\x1b[2J\\x0d\\x07\\x00\\x9b31m\\x7fy"
    assert cell("a\nb\tc") == "a\\x0ab\\x09c"  # a cell is one line
    assert cell({"k": HOSTILE}) == '{"k":"x\\u001b[2J\\r\\u0007\\u0000\\u009b31m\\u007fy"}'


def test_json_and_yaml_escape_them_and_keep_the_data() -> None:
    data = {"message": HOSTILE, f"label{HOSTILE}": "v\u0085w", "lines": "a\nb"}
    text = to_json(data)
    assert_clean(text)
    assert "\x85" not in text
    assert json.loads(text) == data
    text = to_yaml(data)
    assert_clean(text)
    assert "\x85" not in text
    assert yaml.safe_load(text) == data


def node(name: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "role": "worker", "state": "ready", "availability": "active", "addr": "10.0.0.5",
            "labels": {"zone": HOSTILE}, "resources": {"cpus": 2, "memory": 2**30, "hostname": HOSTILE,
                                                      "drivers": ["docker"]},
            "created_at": 1790000000.0, "updated_at": 1790000000.0, "version": 1, **extra}


@pytest.mark.parametrize("fmt", ["table", "json", "yaml"])
def test_node_list_and_inspect_print_hostile_names_hostnames_and_labels_escaped(
    fmt: str, capsys: pytest.CaptureFixture[str]
) -> None:
    evil = f"worker-{HOSTILE}"
    fake = FakeManager({("GET", "/v1/nodes"): [node(evil)], ("GET", "/v1/nodes/w"): node(evil)})
    assert run(fake, "node", "list", "-o", fmt) == 0
    out = capsys.readouterr().out
    assert_clean(out)
    assert run(fake, "node", "inspect", "w", "-o", fmt) == 0
    out = capsys.readouterr().out
    assert_clean(out)
    if fmt == "table":
        assert "worker-x\\x1b[2J\\x0d\\x07\\x00\\x9b31m\\x7fy" in out


@pytest.mark.parametrize("no_trunc", [[], ["--no-trunc"]])
def test_service_ps_prints_a_hostile_task_message_escaped(
    no_trunc: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    tasks = [task("a1" * 16, 1, "failed", node=f"w{HOSTILE}", message=f"boom{HOSTILE}\nsecond line")]
    fake = FakeManager({("GET", "/v1/services/web/tasks"): tasks})
    assert run(fake, "service", "ps", "web", *no_trunc) == 0
    out = capsys.readouterr().out
    assert_clean(out)
    assert len(out.splitlines()) == 2  # the header and the task: no line forged by the message
    assert "boomx\\x1b[2J" in out


def test_cluster_info_escapes_what_the_managers_say(capsys: pytest.CaptureFixture[str]) -> None:
    info = {**CLUSTER, "cluster_id": f"c{HOSTILE}",
            "leader": {"name": f"m\n{HOSTILE}", "api_addr": "1.2.3.4:8080", "raft_id": 1},
            "managers": [{**CLUSTER["managers"][0], "name": f"manager-1\n{HOSTILE}", "status": HOSTILE}]}
    fake = FakeManager({("GET", "/v1/cluster"): info})
    assert run(fake, "cluster", "info") == 0
    out = capsys.readouterr().out
    assert_clean(out)
    assert "Leader: m\\x0ax\\x1b[2J" in out


def test_an_error_from_the_server_is_one_escaped_line(capsys: pytest.CaptureFixture[str]) -> None:
    fake = FakeManager({("GET", "/v1/services/web"): lambda r: httpx.Response(
        404, json={"error": "not_found", "message": f"no service\nwarren: forged {HOSTILE}"})})
    assert run(fake, "service", "inspect", "web") == 1
    captured = capsys.readouterr()
    assert_clean(captured.err, lines_allowed=False)
    assert captured.err.count("\n") == 1 and "no service\\x0awarren: forged x\\x1b[2J" in captured.err


def test_join_token_quiet_escapes_a_hostile_token(capsys: pytest.CaptureFixture[str]) -> None:
    answer = {"token": f"SWMTKN-1-{HOSTILE}", "role": "worker", "ttl_s": 60.0}
    fake = FakeManager({("POST", "/v1/cluster/join-tokens"): answer})
    assert run(fake, "cluster", "join-token", "worker", "-q") == 0
    assert_clean(capsys.readouterr().out)
    assert run(fake, "cluster", "join-token", "worker") == 0
    assert_clean(capsys.readouterr().out)


def logs_manager(text: str) -> FakeManager:
    return FakeManager({("GET", "/v1/services/web/logs"): lambda r: httpx.Response(
        200, content=text.encode(), headers={"Content-Type": "text/plain; charset=utf-8"})})


def test_logs_are_escaped_unless_raw_is_asked_for(capsys: pytest.CaptureFixture[str]) -> None:
    output = "web.1 | progress 10%\rprogress 20%\x1b[2J\x07\n\tindented\n"
    assert run(logs_manager(output), "service", "logs", "web") == 0
    out = capsys.readouterr().out
    assert_clean(out)
    assert out == "web.1 | progress 10%\\x0dprogress 20%\\x1b[2J\\x07\n\tindented\n"
    assert run(logs_manager(output), "service", "logs", "web", "--raw") == 0
    assert capsys.readouterr().out == output


@pytest.mark.parametrize("label", ["zone=a\x1b[2J", "zo\nne=a", "zone=a\x00", "zo\x07ne=a", "zone=a\nb"])
def test_worker_start_refuses_a_label_with_a_control_character_before_joining(
    label: str, capsys: pytest.CaptureFixture[str], tmp_path: Any
) -> None:
    from warren.cli.main import main

    assert main(["worker", "start", "--token", "t", "--manager", "127.0.0.1:1", "--data-dir", str(tmp_path),
                 "--runtime", "process", "--label", label]) == 2
    err = capsys.readouterr().err
    assert_clean(err, lines_allowed=False)
    assert "--label zo" in err
