"""How the docker runtime binds published ports and reads back the ephemeral ones Docker chose for
ingress mappings (the engine's answer is checked like any input)."""

from __future__ import annotations

from typing import Any

import pytest

from warren.runtime.base import PortMapping
from warren.runtime.docker import bound_port, port_bindings


def test_ingress_targets_get_one_ephemeral_binding_and_host_mode_keeps_its_port() -> None:
    publish = (
        PortMapping(8080, 80, ingress=True),
        PortMapping(8081, 80, ingress=True),  # a second published port to the same target
        PortMapping(9000, 80),
        PortMapping(5353, 53, "udp"),
    )
    assert port_bindings(publish, "10.0.0.2") == {
        "80/tcp": [{"HostIp": "10.0.0.2", "HostPort": ""}, 9000],
        "53/udp": [5353],
    }
    assert port_bindings(publish[:1], None) == {"80/tcp": [{"HostIp": "", "HostPort": ""}]}


def test_the_port_bound_on_the_ingress_address_is_preferred() -> None:
    entries = [{"HostIp": "::", "HostPort": "32770"}, {"HostIp": "0.0.0.0", "HostPort": "32769"}]
    assert bound_port(entries, None, set()) == 32769
    assert bound_port([{"HostIp": "10.0.0.2", "HostPort": "32768"}], "10.0.0.2", set()) == 32768
    assert bound_port([{"HostIp": "::", "HostPort": "32770"}], None, set()) == 32770  # better than none
    # The target's host-mode port, bound beside the ingress one, is not it.
    both = [{"HostIp": "0.0.0.0", "HostPort": "9000"}, {"HostIp": "0.0.0.0", "HostPort": "32771"}]
    assert bound_port(both, None, {9000}) == 32771


@pytest.mark.parametrize("entries", [
    None, "32768", [], [None], [{"HostIp": "0.0.0.0"}], [{"HostPort": 32768}], [{"HostPort": ""}],
    [{"HostPort": "0"}], [{"HostPort": "65536"}], [{"HostPort": "-1"}], [{"HostPort": "٣٢٧٦٨"}],
    [{"HostPort": "9" * 100}],
])
def test_an_answer_that_gives_no_valid_port_gives_none(entries: Any) -> None:
    assert bound_port(entries, None, set()) is None
