"""The worker checks a task's spec again before a runtime sees it (issue 13, section 4)."""

from __future__ import annotations

from typing import Any

import pytest

from warren.runtime.base import RuntimeStartError
from warren.worker.taskspec import spec_of, task_run


def task(spec: dict[str, Any]) -> dict[str, Any]:
    return {"task_id": "t1", "service_id": "s1", "service_name": "web", "slot": 1, "spec": spec}


@pytest.mark.parametrize(
    ("spec", "said"),
    [
        ({"image": "../x"}, "spec.image: not a valid image reference"),
        ({"image": "nginx\n"}, "spec.image: not a valid image reference"),
        ({"image": "nginx", "command": ["sh", "a\x00b"]}, "spec.command[1]: must not contain NUL"),
        ({"image": "nginx", "env": {"A": "\x1b"}}, "spec.env[A]: must not contain NUL or control characters"),
        ({"image": "nginx", "env": {"A=B": "x"}}, "spec.env: a key: Expected `str` matching regex"),
        ({"image": "nginx", "health": {"kind": "cmd", "cmd": ["x\x1b"]}}, "spec.health.cmd[0]: must not"),
    ],
)
def test_the_worker_refuses_to_hand_a_runtime_a_bad_spec(spec: dict[str, Any], said: str) -> None:
    with pytest.raises(RuntimeStartError) as caught:
        spec_of(task(spec))
    assert said in str(caught.value)
    assert "\x1b" not in str(caught.value) and "\x00" not in str(caught.value)  # never the value itself


def test_the_worker_passes_a_good_spec_through() -> None:
    doc = task({"image": "nginx:1.27", "command": ["sh", "-c", "a\nb"], "env": {"PEM": "x\ny"}})
    run = task_run(doc, spec_of(doc), "worker-1")
    assert run.image == "nginx:1.27" and run.command == ["sh", "-c", "a\nb"] and run.env["PEM"] == "x\ny"
