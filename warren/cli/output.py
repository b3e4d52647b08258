"""What client commands print: aligned tables for people, JSON or YAML (the API's data as is) for tools.

Nothing a server or a worker said reaches the terminal as a control character (an ESC could clear the
screen, move the cursor or retitle the window; a CR could overwrite a line): a table cell shows each
one as an escape (`\\x1b`), a table or message as a whole keeps only its own TAB and LF, JSON escapes
them as JSON does (DEL and C1 too, which JSON would leave raw), and YAML writes a string that holds
one in double quotes, where YAML escapes it (`\\e`). JSON and YAML still give back the exact data.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Literal

import orjson

from warren.spec.validate import escape_controls

Format = Literal["table", "json", "yaml"]
# A table column: its header and how to get the cell's value from one item.
Column = tuple[str, Callable[[Mapping[str, Any]], object]]


# What JSON leaves raw inside a string (it escapes U+0000-U+001F only): DEL and the C1 controls.
_JSON_RAW_CONTROLS = re.compile(r"[\x7f-\x9f]")
# What makes YAML write a string in double quotes, where every one of them is escaped.
_YAML_QUOTE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def safe(text: str) -> str:
    """Text for a terminal: every control character but TAB and LF written as an escape."""
    return escape_controls(text, keep_tab_lf=True)


def safe_line(text: str) -> str:
    """One line for a terminal (a cell, an error): every control character, TAB and LF too, escaped."""
    return escape_controls(text, keep_tab_lf=False)


def to_json(data: object) -> str:
    try:
        text = orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n"
    except TypeError:  # e.g. an integer beyond 64 bits: the stdlib copes
        text = json.dumps(data, indent=2) + "\n"
    # Only inside strings can they occur, where \u00XX means the same character.
    return _JSON_RAW_CONTROLS.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def to_yaml(data: object) -> str:
    import yaml  # loaded by `-o yaml` alone

    class _Dumper(yaml.SafeDumper):
        pass

    def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
        style = '"' if _YAML_QUOTE.search(value) else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

    _Dumper.add_representer(str, _str)
    text: str = yaml.dump(data, Dumper=_Dumper, sort_keys=False, default_flow_style=False, allow_unicode=True)
    return text


def cell(value: object) -> str:
    """One table cell: "-" for nothing, compact JSON for lists and objects; control characters (even
    TAB and LF: a cell is one line) written as escapes."""
    if value is None or value == "" or value == [] or value == {}:
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | dict):
        return safe_line(json.dumps(value, separators=(",", ":"), sort_keys=True))
    return safe_line(str(value))


def table(rows: Iterable[Sequence[str]], headers: Sequence[str] | None = None, indent: str = "") -> str:
    """Columns padded to their widest cell, two spaces apart; no trailing spaces."""
    lines = [list(headers)] if headers is not None else []
    lines += [list(row) for row in rows]
    if not lines:
        return ""
    widths = [max(len(line[i]) for line in lines if i < len(line)) for i in range(max(map(len, lines)))]
    out = []
    for line in lines:
        padded = [text.ljust(widths[i]) for i, text in enumerate(line)]
        out.append(indent + "  ".join(padded).rstrip())
    return "\n".join(out) + "\n"


def render(data: object, fmt: Format, as_table: Callable[[], str]) -> str:
    """`data` as JSON or YAML, or `as_table()` for the table format."""
    if fmt == "json":
        return to_json(data)
    if fmt == "yaml":
        return to_yaml(data)
    return safe(as_table())  # the cells are escaped already; this covers text put together by hand


def render_list(items: Sequence[Mapping[str, Any]], fmt: Format, columns: Sequence[Column]) -> str:
    return render(
        items, fmt,
        lambda: table(([cell(get(item)) for _, get in columns] for item in items), [h for h, _ in columns]),
    )


def render_object(obj: Mapping[str, Any], fmt: Format) -> str:
    """One object; as a table, a FIELD/VALUE listing with nested objects flattened (`spec.image`)."""
    return render(obj, fmt, lambda: table(([k, v] for k, v in _flatten(obj)), ["FIELD", "VALUE"]))


def _flatten(obj: Mapping[str, Any], prefix: str = "") -> Iterable[tuple[str, str]]:
    for key, value in obj.items():
        name = safe_line(f"{prefix}{key}")
        if isinstance(value, Mapping) and value:
            yield from _flatten(value, name + ".")
        elif key.endswith("_at") and isinstance(value, int | float) and not isinstance(value, bool):
            yield name, timestamp(value)
        else:
            yield name, cell(value)


def timestamp(seconds: float) -> str:
    """A Unix time as ISO 8601 UTC to the second."""
    try:
        return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (OverflowError, OSError, ValueError):
        return str(seconds)


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


_BINARY_UNITS = ("KiB", "MiB", "GiB", "TiB", "PiB")


def human_bytes(count: float) -> str:
    """Binary units, at most one decimal: 536870912 -> "512MiB", 1610612736 -> "1.5GiB", 900 -> "900B"."""
    if count < 1024:
        return f"{count:g}B"
    value = float(count)
    for unit in _BINARY_UNITS:
        value /= 1024
        if value < 1024 or unit == _BINARY_UNITS[-1]:
            return f"{value:.1f}".removesuffix(".0") + unit
    raise AssertionError("unreachable")


def age(seconds: float) -> str:
    """How long ago, in one unit as `docker ps` does: "5s", "12m", "3h", "4d" (never negative)."""
    whole = max(0, int(seconds))
    if whole < 120:
        return f"{whole}s"
    if whole < 7200:
        return f"{whole // 60}m"
    if whole < 2 * 86400:
        return f"{whole // 3600}h"
    return f"{whole // 86400}d"


def shorten(text: str, limit: int) -> str:
    """`text` cut to `limit` characters with an ellipsis; whitespace runs (newlines) become one space."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: max(limit - 1, 0)] + "…"
