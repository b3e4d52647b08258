"""Service specs on the client side: the value syntaxes people write (sizes, published ports, durations),
validation against the API's own models before anything is sent, and what a change really changes.

Shared by `service create|update` (flags) and `apply` (YAML documents), so both accept the same values
and compare a wanted spec with the cluster's one the same way.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from warren.errors import ConfigError
from warren.formats import parse_duration, parse_port
from warren.spec.service import TASK_FIELDS

if TYPE_CHECKING:  # loaded by the functions that use them: daemons never import pydantic
    from pydantic import ValidationError

_PUBLISH = re.compile(r"^\s*(\d+):(\d+)(?:/([A-Za-z]+))?\s*$")
PUBLISH_HELP = "HOST:CONTAINER[/tcp|udp], e.g. 8080:80 or 5353:53/udp"


def parse_publish(value: object) -> dict[str, Any]:
    """{"host", "container", "protocol"} from "8080:80" or "5353:53/udp". Raises ValueError."""
    if isinstance(value, int) and not isinstance(value, bool):
        # YAML 1.1 reads an unquoted 5353:53 as a base-60 number; the user meant the string.
        raise ValueError(f"got the number {value}: quote HOST:CONTAINER (YAML reads 5353:53 as base 60)")
    if not isinstance(value, str):
        raise ValueError(f"expected {PUBLISH_HELP}, got {type(value).__name__}")
    match = _PUBLISH.match(value)
    if match is None:
        raise ValueError(f"expected {PUBLISH_HELP}, got {value!r}")
    protocol = (match.group(3) or "tcp").lower()
    if protocol not in ("tcp", "udp"):
        raise ValueError(f"protocol {match.group(3)!r} in {value!r} is neither tcp nor udp")
    return {"host": parse_port(match.group(1), "host port"),
            "container": parse_port(match.group(2), "container port"), "protocol": protocol}


def parse_seconds(value: object) -> float:
    """Seconds from a number (seconds) or a duration string ("500ms", "1s", "1m30s"). Raises ValueError."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"expected seconds or a duration such as 500ms or 1m, got {value!r}")
    if isinstance(value, str):
        try:
            return parse_duration(value)
        except ConfigError as exc:
            raise ValueError(str(exc)) from exc
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"expected seconds or a duration such as 500ms or 1m, got {value!r}")
    return float(value)


def validation_problems(exc: ValidationError) -> list[tuple[str, str]]:
    """(where, what) for each problem pydantic found: ("health.port", "Input should be ...")."""
    problems = []
    for err in exc.errors():
        where = ".".join(str(part) for part in err.get("loc", ()))
        if err.get("type") == "extra_forbidden":
            what = "unknown field"
        elif err.get("type") == "missing":
            what = "required"
        else:
            what = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        problems.append((where, what))
    return problems


def canonical(field: str, value: object) -> object:
    """A spec field's value as the API reads it: nested parts with their defaults filled in and unset
    (None) members dropped, so a value we send and the cluster's stored copy compare equal when they
    mean the same (the cluster may store a part with or without its defaults)."""
    if value is None:
        return None
    from pydantic import ValidationError

    from warren.api.models import ServiceUpdate

    try:
        model = ServiceUpdate.model_validate({field: value}, strict=False)
    except ValidationError:
        return value  # not ours to judge here; differs from any valid value, so it gets replaced
    dumped = model.model_dump(exclude_none=True)
    return dumped.get(field)


def changed_fields(current: Mapping[str, Any], wanted: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of `wanted` whose meaning differs from the `current` spec's, in canonical form."""
    changes = {}
    for key, value in wanted.items():
        value = canonical(key, value)
        if value != canonical(key, current.get(key)):
            changes[key] = value
    return changes


def rolls_out(changes: Mapping[str, Any]) -> bool:
    """Whether applying `changes` (really changed fields) replaces tasks: a task-defining field changed."""
    return any(key in TASK_FIELDS for key in changes)
