"""Every outside string is checked before use (issue 13, section 4): image references held to the
Docker reference grammar, and control characters refused naming the field, in every field of a spec."""

from __future__ import annotations

import time
from typing import Any

import pytest
from pydantic import ValidationError

from tests.unit.manager.secrets_world import VALUE_B64
from warren.api import models
from warren.spec.validate import escape_controls, image_problem

F64, F128 = "f" * 64, "f" * 128
VALID_IMAGES = [
    "nginx", "nginx:1.27", "busybox", "warren-busybox:latest", "python3", "test_com", "test.com:tag",
    "test.com:5000", "test.com/repo:tag", "test:5000/repo", "test:5000/repo:tag",
    f"test:5000/repo@sha256:{F64}",
    f"test:5000/repo:tag@sha256:{F64}", "lowercase:Uppercase", "a/" * 127 + "a:tag-puts-this-over-max",
    "sub-dom1.foo.com/bar/baz/quux", "sub-dom1.foo.com/bar/baz/quux:some-long-tag",
    "b.gcr.io/test.example.com/my-app:test.example.com", "xn--n3h.com/myimage:xn--n3h.com",
    f"xn--7o8h.com/myimage:xn--7o8h.com@sha512:{F128}", "foo_bar.com:8080", "foo/foo_bar.com:8080",
    "192.168.1.1", "192.168.1.1:tag", "192.168.1.1:5000", "192.168.1.1/repo", "192.168.1.1:5000/repo",
    "192.168.1.1:5000/repo:5050", "[2001:db8::1]/repo", "[2001:db8:1:2:3:4:5:6]/repo:tag",
    "[2001:db8::1]:5000/repo", "[2001:db8::1]:5000/repo:tag", f"[2001:db8::1]:5000/repo@sha256:{F64}",
    "[2001:db8::]:5000/repo", "[::1]:5000/repo", "localhost/x", "localhost:5000/a/b:t", "a__b", "a---b",
    "docker.io/library/nginx:latest", "REGISTRY.example.com/x", "example.com:8000/named:tagged",
    "x:" + "t" * 128, "ghcr.io/a_b/c.d-e:v_1.2-rc3",
]
INVALID_IMAGES = [
    "", ":justtag", f"@sha256:{F64}", "repo@sha256:" + "f" * 34, f"validname@invaliddigest:{F64}",
    "Uppercase:tag", "test:5000/Uppercase/lowercase:tag", "a/" * 128 + "a:tag", "aa/asdf$$^/aa",
    "[2001:db8::1]", "[2001:db8::1]:5000", "[2001:db8::1]:tag", "[fe80::1%eth0]:5000/repo",
    "[fe80::1%@invalidzone]:5000/repo",
    # the and the brief's cases
    "../x", "a//b", "UPPER/x", "x:tag:tag", "a" * 300, "\n", "nginx\n", "nginx\x00", "ng\x1binx",
    "./x", "x/..", "x/../y", "a..b", ".a", "-a", "a-", "a.", "a/", "/a", "x:.t", "x:-t", "x:" + "t" * 129,
    "x@sha256:abc", f"x@SHA256:{F64}", f"x@sha256:{F64.upper()}", "a:b/c", "exa_mple.com/x", "x y",
    "x\ty", "nginx:1.27 ", "nginx@", "nginx:", "é", "x:é", "ng\u202einx", "a" * 513,
]


@pytest.mark.parametrize("ref", VALID_IMAGES)
def test_valid_references_pass(ref: str) -> None:
    assert image_problem(ref) is None
    models.ServiceCreate(name="web", image=ref)


@pytest.mark.parametrize("ref", INVALID_IMAGES)
def test_invalid_references_are_refused_naming_the_image_field(ref: str) -> None:
    assert image_problem(ref) is not None
    with pytest.raises(ValidationError) as caught:
        models.ServiceCreate(name="web", image=ref)
    assert [e["loc"] for e in caught.value.errors()] == [("image",)]
    with pytest.raises(ValidationError):
        models.ServiceUpdate(image=ref)


def test_the_messages_say_what_is_wrong() -> None:
    assert "'..'" in str(image_problem("../x"))
    assert "empty path component" in str(image_problem("a//b"))
    assert "lowercase" in str(image_problem("UPPER/x"))
    assert "longer than 255" in str(image_problem("a" * 300))
    assert "control characters (found U+000A at 5)" in str(image_problem("nginx\n"))
    assert "digest" in str(image_problem("x@sha256:abc"))


def test_no_reference_makes_the_check_slow() -> None:
    hostile = [
        "a" + "-" * 500 + "!", "a." * 250 + "!", "a/" * 255 + "!", "a" * 510 + ":!", "a_" * 255 + "A",
        "x.y" * 100 + "/" + "a-" * 100 + "!", "[" + ":" * 500 + "]/x",
    ]
    start = time.perf_counter()
    for ref in hostile * 20:
        assert image_problem(ref) is not None
    assert time.perf_counter() - start < 1.0


CONTROLS = ["\x00", "\x1b", "\r", "\x07", "\x7f", "\x85", "\x9b", "\x08", "\x0b", "\x0c"]
STRICT_EXTRA = ["\n", "\t"]  # refused where free text is not passed verbatim to a process

BASE: dict[str, Any] = {"name": "web", "image": "nginx"}


def spec_with(path: str, bad: str) -> dict[str, Any]:
    """A valid create body with `bad` put into the field `path` names."""
    cases: dict[str, dict[str, Any]] = {
        "name": {"name": f"web{bad}"},
        "image": {"image": f"nginx{bad}"},
        "command": {"command": ["sh", f"-c{bad}"]},
        "env.value": {"env": {"A": f"x{bad}y"}},
        "env.key": {"env": {f"A{bad}": "x"}},
        "labels.value": {"labels": {"k": f"v{bad}"}},
        "labels.key": {"labels": {f"k{bad}": "v"}},
        "health.cmd": {"health": {"kind": "cmd", "cmd": ["true", f"x{bad}"]}},
        "health.path": {"health": {"kind": "http", "port": 80, "path": f"/a{bad}b"}},
        "constraints": {"constraints": [f"node.labels.zone==a{bad}b"]},
        "secrets": {"secrets": [f"db{bad}"]},
    }
    return {**BASE, **cases[path]}


FIELDS = ["name", "image", "command", "env.value", "env.key", "labels.value", "labels.key", "health.cmd",
          "health.path", "constraints", "secrets"]
VERBATIM = {"command", "env.value", "health.cmd"}  # TAB and LF allowed there


@pytest.mark.parametrize("field", FIELDS)
@pytest.mark.parametrize("bad", CONTROLS + STRICT_EXTRA, ids=lambda c: f"U+{ord(c):04X}")
def test_a_control_character_in_any_field_is_refused_naming_it(field: str, bad: str) -> None:
    body = spec_with(field, bad)
    if bad in STRICT_EXTRA and field in VERBATIM:
        models.ServiceCreate.model_validate(body)  # a multi-line script or PEM value is ordinary text
        return
    with pytest.raises(ValidationError) as caught:
        models.ServiceCreate.model_validate(body)
    locs = [".".join(str(p) for p in e["loc"]) for e in caught.value.errors()]
    top = field.split(".")[0]
    assert locs and all(loc.startswith(top) for loc in locs), locs
    update = {k: v for k, v in body.items() if k != "name"}
    if field != "name":
        with pytest.raises(ValidationError):
            models.ServiceUpdate.model_validate(update)


@pytest.mark.parametrize("bad", CONTROLS + STRICT_EXTRA, ids=lambda c: f"U+{ord(c):04X}")
def test_what_a_worker_sends_is_checked_too(bad: str) -> None:
    join: dict[str, Any] = {"token": "t", "csr": "c", "addr": "10.0.0.1"}
    for body in (
        {**join, "labels": {"zone": f"a{bad}"}},
        {**join, "labels": {f"zo{bad}ne": "a"}},
        {**join, "addr": f"10.0.0.1{bad}"},
        {**join, "token": f"t{bad}"},
        {**join, "resources": {"hostname": f"host{bad}"}},
    ):
        with pytest.raises(ValidationError):
            models.WorkerJoinRequest.model_validate(body)
    with pytest.raises(ValidationError):
        models.SessionRequest.model_validate({"node": "worker-1", "labels": {"k": f"v{bad}"}})
    with pytest.raises(ValidationError):
        models.StatusUpdate.model_validate(
            {"task_id": "t1", "state": "running", "at": 1.0, "container_id": f"c{bad}"}
        )
    with pytest.raises(ValidationError):
        models.SecretCreate.model_validate({"name": f"db{bad}", "data": VALUE_B64})


def test_a_task_message_is_kept_with_its_controls_escaped() -> None:
    update = models.StatusUpdate.model_validate(
        {"task_id": "t1", "state": "failed", "at": 1.0, "message": "boom\x1b[2J\r\x07\x00\nnext\tline"}
    )
    assert update.message == "boom\\x1b[2J\\x0d\\x07\\x00\nnext\tline"
    assert escape_controls("a\tb\n", keep_tab_lf=False) == "a\\x09b\\x0a"


def test_a_trailing_newline_never_slips_past_an_anchored_pattern() -> None:
    for body in (
        {**BASE, "name": "web\n"},
        {**BASE, "env": {"A\n": "x"}},
        {**BASE, "labels": {"k\n": "v"}},
        {**BASE, "secrets": ["db\n"]},
    ):
        with pytest.raises(ValidationError):
            models.ServiceCreate.model_validate(body)
    with pytest.raises(ValidationError):
        models.SessionRequest.model_validate({"node": "worker-1\n"})
    with pytest.raises(ValidationError):
        models.StatusUpdate.model_validate({"task_id": "t1\n", "state": "running", "at": 1.0})
