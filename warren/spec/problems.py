"""How a refusal by msgspec is told, the same way for a command and a spec: "<root>.<path>: <what>"
("spec.health.port: Expected `int`, got `str`", "node.remove: missing field 'at'")."""

from __future__ import annotations

import re

# msgspec's "<what> - at `$.tasks[0].slot`" (no " - at" when the problem is at the root; "- at `key`
# in `$.env`" when it is a mapping's key).
_AT = re.compile(r"^(?P<what>.*?)(?: - at (?P<key>`key` in )?`\$(?P<path>[^`]*)`)?$", re.DOTALL)
_FIELD = re.compile(r"^Object (?:(?P<missing>missing required)|contains unknown) field `(?P<name>.*)`$")
# A check of ours (a __post_init__) names its field first: "labels.tier: must not contain ...".
_OURS = re.compile(r"^(?P<field>[A-Za-z_][\w./\[\]-]*): (?P<what>.+)$", re.DOTALL)


def problem(root: str, message: str) -> str:
    """msgspec's ValidationError message as "<root>.<path>: <what>", a field too many or too few in
    plain words ("missing field 'at'", "unknown field 'x'")."""
    found = _AT.match(message)
    assert found is not None  # the pattern matches any text
    what, path = found.group("what"), found.group("path") or ""
    field = _FIELD.match(what)
    ours = _OURS.match(what)
    if field is not None:
        kind = "missing field" if field.group("missing") else "unknown field"
        what = f"{kind} {field.group('name')!r}"
    elif ours is not None:
        path, what = f"{path}.{ours.group('field')}", ours.group("what")
    if found.group("key"):
        what = f"a key: {what}"
    return f"{root}{path}: {what}"
