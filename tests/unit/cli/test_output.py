"""The CLI's renderers: aligned tables, JSON, YAML, durations."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from warren.cli.output import Column, cell, render_list, render_object, table
from warren.formats import format_duration

ROWS: list[dict[str, Any]] = [
    {"name": "a", "n": 1, "tags": ["x"]},
    {"name": "long-name", "n": None, "tags": []},
]
COLUMNS: list[Column] = [
    ("NAME", lambda r: r["name"]), ("N", lambda r: r["n"]), ("TAGS", lambda r: r["tags"]),
]


def test_table_aligns_and_has_no_trailing_spaces() -> None:
    assert render_list(ROWS, "table", COLUMNS) == (
        "NAME       N  TAGS\n"
        "a          1  [\"x\"]\n"
        "long-name  -  -\n"
    )


def test_table_indent_and_ragged_rows() -> None:
    assert table([["a", "bb"], ["ccc"]], indent="  ") == "  a    bb\n  ccc\n"
    assert table([]) == ""


def test_json_and_yaml_keep_the_data() -> None:
    assert json.loads(render_list(ROWS, "json", COLUMNS)) == ROWS
    assert render_list(ROWS, "json", COLUMNS).startswith('[\n  {\n    "name": "a"')
    assert yaml.safe_load(render_list(ROWS, "yaml", COLUMNS)) == ROWS


def test_json_falls_back_for_huge_integers() -> None:
    assert json.loads(render_object({"big": 2**70}, "json")) == {"big": 2**70}


def test_object_table_flattens() -> None:
    out = render_object({"id": "s", "spec": {"image": "nginx", "env": {"A": "1"}}, "ok": True}, "table")
    assert out == "FIELD       VALUE\nid          s\nspec.image  nginx\nspec.env.A  1\nok          true\n"


@pytest.mark.parametrize(("value", "text"), [(None, "-"), ("", "-"), (False, "false"), (3, "3"),
                                             ({"b": 1, "a": 2}, '{"a":2,"b":1}')])
def test_cell(value: object, text: str) -> None:
    assert cell(value) == text


@pytest.mark.parametrize(("seconds", "text"), [(86400, "24h"), (5400, "1h30m"), (90, "1m30s"), (10, "10s"),
                                               (0.5, "500ms"), (3600 * 48, "48h")])
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
