"""`--publish` of `warren service create|update` and `publish:` of `apply -f`: Docker's long syntax
(mode=,published=,target=,protocol=) and the short PUBLISHED:TARGET[/proto], each item with its mode
(ingress unless given; host for UDP), and a stored item without a mode kept in host mode."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.unit.cli.fake_api import FakeManager, run
from tests.unit.cli.test_apply_cmds import Manager, apply, write
from tests.unit.cli.test_service_cmds import created
from warren.cli import specs
from warren.cli.apply_cmds import load


def item(published: int, target: int, protocol: str = "tcp", mode: str = "ingress") -> dict[str, Any]:
    return {"host": published, "container": target, "protocol": protocol, "mode": mode}


@pytest.mark.parametrize(("given", "expected"), [
    ("8080:80", item(8080, 80)),
    (" 8080:80/TCP ", item(8080, 80)),
    ("5353:53/udp", item(5353, 53, "udp", "host")),
    ("mode=host,published=8080,target=80", item(8080, 80, mode="host")),
    ("published=8080,target=80", item(8080, 80)),
    ("target=80, published=8080, mode=INGRESS, protocol=tcp", item(8080, 80)),
    ("published=53,target=53,protocol=udp", item(53, 53, "udp", "host")),
    ('"mode=host","published=53","target=53","protocol=udp"', item(53, 53, "udp", "host")),
    ({"published": 8443, "target": 443}, item(8443, 443)),
    ({"host": 8443, "container": 443, "protocol": "udp"}, item(8443, 443, "udp", "host")),
    ({"mode": "host", "published": "8443", "target": 443}, item(8443, 443, mode="host")),
])
def test_every_syntax_gives_an_item_with_its_mode(given: object, expected: dict[str, Any]) -> None:
    assert specs.parse_publish(given) == expected


@pytest.mark.parametrize(("given", "problem"), [
    ("mode=ingress,published=8080", "needs target=PORT"),
    ("mode=host,target=80", "needs published=PORT"),
    ("published=8080,target=80,color=red", "unknown key 'color'"),
    ("published=8080,target=80,published=8081", "published is given twice"),
    ("published=8080,target=", "target needs a value"),
    ("published,target=80", "published needs a value"),
    ("published=x,target=80", "published port 'x' is not a port number"),
    ("published=70000,target=80", "published port '70000' is not a port number"),
    ("published=8080,target=0", "target port '0' is not a port number"),
    ("published=8080,target=80,mode=overlay", "mode 'overlay' in"),
    ("published=8080,target=80,protocol=sctp", "protocol 'sctp' in"),
    ('published="8080,target=80', "in "),  # CSV: an unclosed quote
    ({"published": 8080, "host": 8081, "target": 80}, "published and host both given"),
    ({"published": 8080, "target": 80, "extra": 1}, "unknown key 'extra'"),
    ({"published": True, "target": 80}, "expected a port number, got bool"),
    ({"published": 8080, "target": 80, "mode": 1}, "mode in a publish item: expected text"),
    (["8080:80"], "expected PUBLISHED:TARGET"),
])
def test_bad_publish_values_are_refused_saying_why(given: object, problem: str) -> None:
    with pytest.raises(ValueError) as caught:
        specs.parse_publish(given)
    assert problem in str(caught.value)


def test_udp_ingress_is_refused_by_the_cli_before_anything_is_sent(
    capsys: pytest.CaptureFixture[str]
) -> None:
    fake = FakeManager({})
    code = run(fake, "service", "create", "-d", "dns", "--image", "x",
               "--publish", "mode=ingress,published=53,target=53,protocol=udp")
    assert code != 0
    assert "ingress forwards TCP only; publish UDP ports with mode=host" in capsys.readouterr().err
    assert fake.requests == []


def test_create_sends_each_port_with_its_mode() -> None:
    fake = FakeManager({("POST", "/v1/services"): created})
    assert run(fake, "service", "create", "-d", "web", "--image", "nginx", "--publish", "8080:80",
               "--publish", "mode=host,published=9090,target=90", "--publish", "5353:53/udp") == 0
    assert fake.body()["publish"] == [item(8080, 80), item(9090, 90, mode="host"),
                                      item(5353, 53, "udp", "host")]


def test_apply_takes_strings_and_mappings_with_either_keys(tmp_path: Path) -> None:
    text = ("name: web\nimage: nginx\npublish:\n  - '8080:80'\n  - mode=host,published=9090,target=90\n"
            "  - {published: 8443, target: 443}\n  - {host: 5353, container: 53, protocol: udp}\n")
    (doc,), problems = load([("stack.yaml", text)])
    assert problems == []
    assert doc.wanted["publish"] == [item(8080, 80), item(9090, 90, mode="host"), item(8443, 443),
                                     item(5353, 53, "udp", "host")]
    bad = "name: web\nimage: nginx\npublish: [{published: 8080, target: 80, mode: ingress, protocol: udp}]\n"
    _, problems = load([("stack.yaml", bad)])
    assert len(problems) == 1 and "ingress forwards TCP only" in problems[0]


def test_apply_over_a_service_stored_before_ingress(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manager = Manager()
    manager.services["old"] = {"id": "svc-old", "name": "old", "version": 3, "update_status": None,
                               "spec": {"image": "nginx", "publish": [{"host": 8080, "container": 80,
                                                                       "protocol": "tcp"}]}}
    # The same port in host mode, said explicitly: what the stored item (no mode) means already.
    path = write(tmp_path, "name: old\nimage: nginx\npublish: ['mode=host,published=8080,target=80']\n")
    assert apply(manager, "-f", path) == 0
    assert capsys.readouterr().out == "service/old unchanged\n"
    assert manager.writes() == []
    # The short syntax is ingress now: a change.
    write(tmp_path, "name: old\nimage: nginx\npublish: ['8080:80']\n")
    assert apply(manager, "-f", path) == 0
    assert capsys.readouterr().out == "service/old updated\n"
    assert manager.writes() == [("PATCH", "/v1/services/old", {"publish": [item(8080, 80)]})]
