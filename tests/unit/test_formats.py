"""The text forms Warren reads (warren/formats.py): durations and HOST:PORT addresses."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from warren import formats
from warren.errors import ConfigError
from warren.formats import join_host_port, parse_duration, service_name_problem, split_host_port


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("500ms", 0.5),
        ("1s", 1.0),
        ("1m", 60.0),
        ("1.5s", 1.5),
        ("150ms", 0.15),
        ("0s", 0.0),
        (".5s", 0.5),
        ("2h", 7200.0),
        ("1m30s", 90.0),
        ("1h1m1s1ms", 3661.001),
        ("  250ms\n", 0.25),
    ],
)
def test_parse_duration_examples(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "5",
        "1.5",
        "s",
        "ms",
        "-1s",
        "+1s",
        "1x",
        "1 s",
        "1s2",
        "1sms",
        "1e3s",
        "nans",
        "infs",
        "1,5s",
        "1S",
        "1d",
        "9" * 400 + "h",
    ],
)
def test_parse_duration_rejects_bad_input(text: str) -> None:
    with pytest.raises(ConfigError, match="invalid duration"):
        parse_duration(text)


@given(st.integers(min_value=0, max_value=10**12))
def test_parse_duration_milliseconds_round_trip(ms: int) -> None:
    assert parse_duration(f"{ms}ms") == ms / 1000


@given(st.decimals(min_value=0, max_value=10**6, places=3, allow_nan=False, allow_infinity=False))
def test_parse_duration_decimal_seconds_round_trip(seconds: Decimal) -> None:
    assert parse_duration(f"{seconds:f}s") == float(seconds)


@given(
    st.integers(min_value=0, max_value=10_000),
    st.integers(min_value=0, max_value=59),
    st.integers(min_value=0, max_value=59),
    st.integers(min_value=0, max_value=999),
)
def test_parse_duration_compound_round_trip(h: int, m: int, s: int, ms: int) -> None:
    text = f"{h}h{m}m{s}s{ms}ms"
    assert parse_duration(text) == (((h * 60 + m) * 60 + s) * 1000 + ms) / 1000


@pytest.mark.parametrize(
    ("text", "expected"),
    [("127.0.0.1:8080", ("127.0.0.1", 8080)), ("[::1]:7946", ("::1", 7946)), (" host:1 ", ("host", 1))],
)
def test_split_host_port(text: str, expected: tuple[str, int]) -> None:
    assert split_host_port(text) == expected
    assert split_host_port(join_host_port(*expected)) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "host",
        ":80",
        "host:",
        "host:0",
        "host:65536",
        "host:http",
        "::1",
        "bad:port:x",
        "a b:80",
        "a,b:80",
        "[zz::1]:80",
        "h/x:80",
    ],
)
def test_split_host_port_refuses(text: str) -> None:
    with pytest.raises(ConfigError, match="HOST:PORT|not a host name"):
        split_host_port(text, field="listen_addr")


def test_bare_host_takes_the_default_port() -> None:
    assert split_host_port("10.0.0.5", default_port=8080) == ("10.0.0.5", 8080)


def test_a_service_name_problem_says_it_is_a_dns_name() -> None:
    for good in ("web", "a" * 63, "0", "api-2"):
        assert service_name_problem(good) is None
    assert service_name_problem(12) is None  # not a string: the type check's to say
    problem = service_name_problem("web.warren")
    assert problem is not None and problem.startswith("a service name is a DNS name")
    assert problem.endswith("(got 'web.warren')")
    long = service_name_problem("x" * 1000)
    assert long is not None and len(long) < 300 and long.endswith("...')")


@pytest.mark.parametrize("text", ["80", " 8080 ", "65535", "1"])
def test_a_port_is_ascii_digits_in_range(text: str) -> None:
    assert formats.parse_port(text) == int(text)


@pytest.mark.parametrize("text", ["0", "65536", "-1", "+80", "8O", "", "²", "٨٠", "８０", "80.0"])
def test_anything_else_is_refused_with_the_same_clear_error(text: str) -> None:
    with pytest.raises(ValueError, match="is not a port number from 1 to 65535"):
        formats.parse_port(text, "published port")
