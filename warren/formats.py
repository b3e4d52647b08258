"""The text forms Warren reads (and writes back): durations, sizes, ports, host:port addresses and names.

Parsers and patterns (and their writers back), importing nothing of Warren but its errors, so that
settings, the spec, the API, the CLI and the daemons read every value the same way.
"""

from __future__ import annotations

import ipaddress
import math
import re
from decimal import Decimal, DecimalException

from warren.errors import ConfigError

MIB = 1024 * 1024

# -- durations ------------------------------------------------------------------------------------

_UNIT_S = {"ms": Decimal("0.001"), "s": Decimal(1), "m": Decimal(60), "h": Decimal(3600)}
# One or more <number><unit> parts, Go style: "500ms", "1.5s", "1m30s".
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ms|s|m|h)")


def parse_duration(text: str) -> float:
    """Seconds in a duration such as "500ms", "1s", "1.5s", "1m", "1h" or "1m30s".

    A unit is required (a bare "5" is ambiguous); negative values are rejected. Raises ConfigError.
    """
    stripped = text.strip()
    pos = 0
    total = Decimal(0)
    while pos < len(stripped):
        part = _DURATION_PART.match(stripped, pos)
        if part is None:
            break
        try:
            total += Decimal(part.group(1)) * _UNIT_S[part.group(2)]
        except DecimalException:  # exponent overflow on absurdly long input
            break
        pos = part.end()
    if not stripped or pos != len(stripped):
        raise ConfigError(
            f"invalid duration {text!r}: expected a number and a unit, e.g. 500ms, 1s, 1.5s, 1m"
        )
    seconds = float(total)
    if not math.isfinite(seconds):
        raise ConfigError(f"invalid duration {text!r}: too large")
    return seconds




def seconds_to_ms(seconds: float) -> int:
    """Whole milliseconds in `seconds`, as the Raft core counts them."""
    return round(seconds * 1000)


def format_duration(seconds: float) -> str:
    """Go-style short duration, as parse_duration reads it: 86400 -> "24h", 5400 -> "1h30m", 90 ->
    "1m30s", 0.5 -> "500ms"."""
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    total = round(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{hours}h" if hours else "", f"{minutes}m" if minutes else "", f"{secs}s" if secs else ""]
    return "".join(parts) or "0s"


# -- sizes and ports ------------------------------------------------------------------------------

# Binary multiples whatever the spelling: "1g" = "1gb" = "1GiB" = 2**30 bytes (as Docker reads them).
_SIZE_UNITS = {"": 1, "b": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40, "p": 2**50}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(?:([kmgtp])(?:i?b)?|(b))?\s*$", re.IGNORECASE)
SIZE_HELP = "512m, 1g, 256MiB, 1.5GB or bytes; k/m/g are binary (KiB/MiB/GiB)"


def parse_size(value: object) -> int:
    """Bytes from "512m", "1g", "256MiB", "1.5GB", "4096" or a number of bytes. Raises ValueError."""
    if isinstance(value, bool):
        raise ValueError(f"expected a size such as 512m or 1g, got {value!r}")
    if isinstance(value, int | float):
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"expected a size such as 512m or 1g, got {value!r}")
        return round(value)
    if not isinstance(value, str):
        raise ValueError(f"expected a size such as 512m or 1g, got {type(value).__name__}")
    match = _SIZE.match(value)
    if match is None:
        raise ValueError(f"invalid size {value!r}: expected a number and a unit, e.g. {SIZE_HELP}")
    number, unit = match.group(1), (match.group(2) or "").lower()
    return round(float(number) * _SIZE_UNITS[unit])


def parse_port(text: str, what: str = "port") -> int:
    digits = text.strip()
    # ASCII only: str.isdigit() also takes "²" (which int() refuses) and "٨٠" (which int() reads as 80).
    if not (digits.isascii() and digits.isdigit()) or not 1 <= int(digits) <= 65535:
        raise ValueError(f"{what} {digits!r} is not a port number from 1 to 65535")
    return int(digits)



# -- names and addresses ---------------------------------------------------------------------------


# Service (and other user-chosen) names: DNS-label-like, 1-63 chars.
NAME_PATTERN = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"
_NAME = re.compile(NAME_PATTERN)
NAME_RULE = "1 to 63 lowercase letters, digits and '-', beginning and ending with a letter or digit"


def service_name_problem(name: object) -> str | None:
    """Why `name` cannot name a service (other tasks find a service by its name in DNS), else None."""
    if not isinstance(name, str) or (len(name) <= 63 and _NAME.fullmatch(name) is not None):
        return None  # not a string: the type check says so
    shown = name if len(name) <= 80 else name[:77] + "..."
    return f"a service name is a DNS name (tasks find the service by it): {NAME_RULE} (got {shown!r})"


def split_host_port(addr: str, *, field: str = "address", default_port: int | None = None) -> tuple[str, int]:
    """("host", port) from "host:port" or "[v6]:port"; with default_port, a bare host is accepted too."""
    text = addr.strip()
    host, sep, port_text = text.rpartition(":")
    if text.startswith("[") and "]" in text:
        end = text.index("]")
        host = text[1:end]
        rest = text[end + 1 :]
        sep, port_text = (":", rest[1:]) if rest.startswith(":") else ("", "")
    elif not sep or ":" in host:
        host, sep, port_text = text, "", ""
    if host and not _valid_host(host):
        raise ConfigError(f"{field} {addr!r}: {host!r} is not a host name or IP address")
    if not sep:
        if default_port is None or not host:
            raise ConfigError(f"{field} {addr!r} must be HOST:PORT")
        return host, default_port
    if not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ConfigError(f"{field} {addr!r} must be HOST:PORT with a port from 1 to 65535")
    return host, int(port_text)


_HOST_NAME = re.compile(r"^[A-Za-z0-9_]([A-Za-z0-9_.-]{0,252})$")


def _valid_host(host: str) -> bool:
    """A DNS name or IPv4 address (letters, digits, '.', '-', '_'), or an IPv6 address."""
    if ":" in host:
        try:
            ipaddress.IPv6Address(host.split("%", 1)[0])
        except ValueError:
            return False
        return True
    return _HOST_NAME.match(host) is not None


def join_host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
