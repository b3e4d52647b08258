"""The configs of `warren apply -f` files: a document `configs: {NAME: {file: PATH} | {content: TEXT}}`
declares configs, which apply creates when missing (before the services that name them) and leaves
alone when the cluster's has the same content. One whose content differs is refused: a config never
changes, new content takes a new name.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from warren.cli.specs import read_config_file
from warren.formats import NAME_PATTERN

IMMUTABLE = "configs are immutable: give the new content a new name"


@dataclass
class ConfigItem:
    """One config an apply file declares: its content, read when the file was checked."""

    where: str  # "stack.yaml: document 3, configs.app-conf"
    name: str
    content: bytes

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.content).hexdigest()


def is_configs_document(raw: object) -> bool:
    """Whether a YAML document declares configs (`configs:` a mapping, with no service `name`)."""
    return isinstance(raw, Mapping) and isinstance(raw.get("configs"), Mapping) and "name" not in raw


def config_items(where: str, raw: Mapping[str, Any], base_dir: str) -> tuple[list[ConfigItem], list[str]]:
    """The configs of a configs document (files relative to `base_dir`, the apply file's directory),
    and the problems found, each naming the document and the config."""
    import re

    items: list[ConfigItem] = []
    problems: list[str] = []
    unknown = sorted(str(k) for k in raw if k not in ("kind", "configs"))
    if raw.get("kind", "configs") != "configs" or unknown:
        what = f"unknown fields {unknown}" if unknown else f"kind {raw.get('kind')!r} with configs"
        problems.append(f"{where}: {what} (a configs document holds `configs:` only)")
    for name, spec in raw["configs"].items():
        at = f"{where}: configs.{name}"
        if not isinstance(name, str) or re.search(NAME_PATTERN, name) is None or "\n" in name:
            problems.append(f"{at}: a config name is 1 to 63 lowercase letters, digits and '-'")
            continue
        if not isinstance(spec, Mapping) or len(spec) != 1 or next(iter(spec)) not in ("file", "content"):
            problems.append(f"{at}: expected {{file: PATH}} or {{content: TEXT}}, exactly one")
            continue
        if "file" in spec:
            path = spec["file"]
            if not isinstance(path, str) or not path:
                problems.append(f"{at}.file: expected a path")
                continue
            full = os.path.join(base_dir, os.path.expanduser(path))
            try:
                content = read_config_file(full)
            except OSError as exc:
                problems.append(f"{at}.file: cannot read {full}: {exc.strerror or exc}")
                continue
            except ValueError as exc:
                problems.append(f"{at}.file: {exc}")
                continue
        else:
            text = spec["content"]
            if not isinstance(text, str):
                problems.append(f"{at}.content: expected text")
                continue
            content = text.encode("utf-8")
        if not content:
            problems.append(f"{at}: the content is empty")
            continue
        items.append(ConfigItem(at, name, content))
    return items, problems


def named_by(wanted: Mapping[str, Any]) -> list[str]:
    """The configs a service document's fields name."""
    refs = wanted.get("configs")
    if not isinstance(refs, list):
        return []
    return [str(r["name"]) for r in refs if isinstance(r, Mapping) and "name" in r]


def plan_configs(
    items: Iterable[ConfigItem], existing: Mapping[str, Mapping[str, Any]], needed: Mapping[str, str]
) -> tuple[list[ConfigItem], list[ConfigItem], list[str]]:
    """(to create, unchanged, problems) given the cluster's configs by name (`existing`, with their
    `digest`) and the configs the services name (`needed`: name -> where)."""
    create: list[ConfigItem] = []
    same: list[ConfigItem] = []
    problems: list[str] = []
    seen: dict[str, ConfigItem] = {}
    for item in items:
        earlier = seen.get(item.name)
        if earlier is not None:
            if earlier.digest != item.digest:
                problems.append(f"{item.where}: config {item.name!r} is also in {earlier.where}, with "
                                "another content")
            continue
        seen[item.name] = item
        current = existing.get(item.name)
        if current is None:
            create.append(item)
        elif current.get("digest") == item.digest:
            same.append(item)
        else:
            problems.append(
                f"{item.where}: config {item.name!r} exists with a different content: {IMMUTABLE}"
            )
    for name, where in needed.items():
        if name not in existing and name not in seen:
            problems.append(f"{where}: config {name!r} does not exist and no configs document declares it "
                            "(warren config create NAME FILE, or a `configs:` document)")
    return create, same, problems
