"""Service specs on the client side: the value syntaxes people write (sizes, published ports, durations),
validation against the API's own models before anything is sent, and what a change really changes.

Shared by `service create|update` (flags) and `apply` (YAML documents), so both accept the same values
and compare a wanted spec with the cluster's one the same way.
"""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from warren.errors import ConfigError
from warren.formats import parse_duration, parse_port, parse_size
from warren.spec.mounts import DEFAULT_VOLUME_POLICY
from warren.spec.publishing import default_mode
from warren.spec.service import DEFAULT_DISCOVERY, TASK_FIELDS

if TYPE_CHECKING:  # loaded by the functions that use them: daemons never import pydantic
    from pydantic import ValidationError

_PUBLISH = re.compile(r"^\s*(\d+):(\d+)(?:/([A-Za-z]+))?\s*$")
PUBLISH_HELP = ("PUBLISHED:TARGET[/tcp|udp] or mode=ingress|host,published=P,target=T[,protocol=tcp|udp], "
                "e.g. 8080:80 or mode=host,published=8080,target=80")
# Docker's keys of --publish's long syntax, and the spec's names for them.
_PUBLISH_KEYS = {"mode": "mode", "published": "host", "target": "container", "protocol": "protocol"}


def parse_publish(value: object) -> dict[str, Any]:
    """{"host", "container", "protocol", "mode"} from "8080:80", "5353:53/udp" or Docker's long syntax
    "mode=host,published=8080,target=80[,protocol=tcp]"; from a mapping (apply) with those keys or the
    spec's (host, container). Without a mode: ingress, but host for a UDP port
    (warren.spec.publishing.default_mode). Raises ValueError."""
    if isinstance(value, int) and not isinstance(value, bool):
        # YAML 1.1 reads an unquoted 5353:53 as a base-60 number; the user meant the string.
        raise ValueError(f"got the number {value}: quote PUBLISHED:TARGET (YAML reads 5353:53 as base 60)")
    if isinstance(value, Mapping):
        return _publish_mapping(value)
    if not isinstance(value, str):
        raise ValueError(f"expected {PUBLISH_HELP}, got {type(value).__name__}")
    if "=" in value:
        return _publish_long(value)
    match = _PUBLISH.match(value)
    if match is None:
        raise ValueError(f"expected {PUBLISH_HELP}, got {value!r}")
    protocol = (match.group(3) or "tcp").lower()
    if protocol not in ("tcp", "udp"):
        raise ValueError(f"protocol {match.group(3)!r} in {value!r} is neither tcp nor udp")
    return {"host": parse_port(match.group(1), "published port"),
            "container": parse_port(match.group(2), "target port"), "protocol": protocol,
            "mode": default_mode(protocol)}


def _key_values(value: str) -> list[tuple[str, bool, str]]:
    """Docker's `key=value,key=value` flag text (a field holding a comma quoted, as CSV): (key as
    written, whether it has "=", value) per field. Raises ValueError."""
    try:
        rows = list(csv.reader([value], strict=True))
    except csv.Error as exc:
        raise ValueError(f"{exc} in {value!r}") from exc
    out = []
    for item in rows[0] if rows else []:
        key, sep, text = item.strip().partition("=")
        out.append((key.strip(), bool(sep), text))
    return out


def _publish_long(value: str) -> dict[str, Any]:
    given: dict[str, str] = {}
    for written, sep, text in _key_values(value):
        key = written.lower()
        if key not in _PUBLISH_KEYS:
            raise ValueError(f"unknown key {key!r} in {value!r} (expected {PUBLISH_HELP})")
        if not sep or not text.strip():
            raise ValueError(f"{key} needs a value ({key}=...) in {value!r}")
        if key in given:
            raise ValueError(f"{key} is given twice in {value!r}")
        given[key] = text.strip()
    return _publish_mapping(given, value)


def _publish_mapping(item: Mapping[Any, Any], text: str | None = None) -> dict[str, Any]:
    """The API's form of a publish item given with Docker's keys or the spec's; numbers may be text."""
    where = repr(text) if text is not None else "a publish item"
    unknown = [str(k) for k in item if k not in _PUBLISH_KEYS and k not in _PUBLISH_KEYS.values()]
    if unknown:
        raise ValueError(f"unknown key {unknown[0]!r} in {where} "
                         "(expected mode, published, target, protocol)")
    out: dict[str, Any] = {}
    for key, field in _PUBLISH_KEYS.items():
        if key in item and key != field and field in item:
            raise ValueError(f"{key} and {field} both given in {where}: they are the same")
        raw = item.get(key, item.get(field))
        if raw is None:
            continue
        if field in ("host", "container"):
            out[field] = _port_value(raw, key, where)
        elif not isinstance(raw, str):
            raise ValueError(f"{key} in {where}: expected text, got {type(raw).__name__}")
        else:
            out[field] = raw.strip().lower()
    for key, field in (("published", "host"), ("target", "container")):
        if field not in out:
            raise ValueError(f"{where} needs {key}=PORT")
    protocol = out.setdefault("protocol", "tcp")
    if protocol not in ("tcp", "udp"):
        raise ValueError(f"protocol {protocol!r} in {where} is neither tcp nor udp")
    mode = out.setdefault("mode", default_mode(protocol))
    if mode not in ("ingress", "host"):
        raise ValueError(f"mode {mode!r} in {where} is neither ingress nor host")
    return out


def _port_value(raw: object, key: str, where: str) -> int:
    if isinstance(raw, int) and not isinstance(raw, bool):
        raw = str(raw)
    if not isinstance(raw, str):
        raise ValueError(f"{key} in {where}: expected a port number, got {type(raw).__name__}")
    try:
        return parse_port(raw.strip(), f"{key} port")
    except ValueError as exc:
        raise ValueError(f"{exc} (in {where})") from None


DEVICE_HELP = "HOST_PATH[:CONTAINER_PATH[:PERMISSIONS]], e.g. /dev/ttyUSB0 or /dev/video0:/dev/cam:r"
ULIMIT_HELP = "SOFT[:HARD] (a number; HARD defaults to SOFT)"


def parse_device(value: object) -> object:
    """{"host", "container"?, "permissions"?} from "/dev/a[:/dev/b[:rw]]"; a mapping is left as it is
    (the API's model judges it). Raises ValueError."""
    if not isinstance(value, str):
        if isinstance(value, Mapping):
            return dict(value)
        raise ValueError(f"expected {DEVICE_HELP}, got {type(value).__name__}")
    parts = value.split(":")
    if len(parts) > 3 or not parts[0]:
        raise ValueError(f"expected {DEVICE_HELP}, got {value!r}")
    device: dict[str, Any] = {"host": parts[0]}
    if len(parts) > 1 and parts[1]:
        device["container"] = parts[1]
    if len(parts) > 2:
        # Any order, as Docker takes it; the spec writes them in the order r, w, m.
        perms = parts[2]
        if not perms or set(perms) - set("rwm") or len(set(perms)) != len(perms):
            raise ValueError(f"permissions {perms!r} in {value!r}: expected some of r, w, m (each once)")
        device["permissions"] = "".join(p for p in "rwm" if p in perms)
    return device


MOUNT_HELP = ("type=volume|bind|tmpfs,src=SOURCE,dst=TARGET[,ro][,size=SIZE], e.g. "
              "type=volume,src=data,dst=/var/lib/data or type=tmpfs,dst=/cache,size=64m")
# Docker's spellings of each key of --mount, and what they are in the spec.
_MOUNT_KEYS = {
    "type": "type", "source": "source", "src": "source", "target": "target", "dst": "target",
    "destination": "target", "readonly": "read_only", "ro": "read_only", "read_only": "read_only",
    "size": "size", "tmpfs-size": "size",
}
_TRUE = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


def parse_mount(value: object) -> object:
    """A mount in the API's form ({"type", "target", "source"?, "read_only"?, "size"?}) from Docker's
    --mount text ("type=volume,src=data,dst=/data,ro"; a field holding a comma is quoted, as CSV) or from
    a mapping with the spec's field names (sizes may be written 64m). Raises ValueError."""
    if isinstance(value, Mapping):
        given = dict(value)
        if isinstance(given.get("size"), str):
            given["size"] = parse_size(given["size"])
        return given
    if not isinstance(value, str):
        raise ValueError(f"expected {MOUNT_HELP}, got {type(value).__name__}")
    mount: dict[str, Any] = {}
    for key, sep, text in _key_values(value):
        field = _MOUNT_KEYS.get(key.lower())
        if field is None:
            raise ValueError(f"unknown key {key!r} in {value!r} (expected {MOUNT_HELP})")
        if field in mount:
            raise ValueError(f"{key} is given twice in {value!r}")
        if field == "read_only":
            flag = _TRUE.get(text.strip().lower()) if sep else True
            if flag is None:
                raise ValueError(f"{key}={text!r} in {value!r}: expected true or false")
            mount[field] = flag
        elif not sep:
            raise ValueError(f"{key} needs a value ({key}=...) in {value!r}")
        elif field == "size":
            mount[field] = parse_size(text.strip())
        else:
            mount[field] = text
    mount.setdefault("type", "volume")  # Docker's default
    return mount


def parse_ulimit(value: object) -> object:
    """{"soft", "hard"} from 1024, "1024" or "1024:4096"; a mapping is left as it is. Raises ValueError."""
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return {"soft": value, "hard": value}
    if not isinstance(value, str):
        raise ValueError(f"expected {ULIMIT_HELP}, got {value!r}")
    soft, _, hard = value.partition(":")
    if not soft.strip().isdigit() or (hard and not hard.strip().isdigit()):
        raise ValueError(f"expected {ULIMIT_HELP}, got {value!r}")
    return {"soft": int(soft), "hard": int(hard or soft)}


# The most a config's content can be for any manager: the API takes at most 4 MiB of base64
# (api.models.SecretData). A larger file is refused before it is read whole.
CONFIG_READ_LIMIT = 3 * 1024 * 1024


def read_config_file(path: str) -> bytes:
    """The content of file `path` ('-': standard input); ValueError if it is larger than any manager
    accepts. OSError if it cannot be read."""
    import sys

    if path == "-":
        content = sys.stdin.buffer.read(CONFIG_READ_LIMIT + 1)
    else:
        with open(path, "rb") as handle:
            content = handle.read(CONFIG_READ_LIMIT + 1)
    if len(content) > CONFIG_READ_LIMIT:
        from warren.config import ManagerSettings

        where = "standard input" if path == "-" else path
        default = ManagerSettings().max_config_bytes // 1024
        raise ValueError(f"{where} is larger than {CONFIG_READ_LIMIT // (1024 * 1024)} MiB, more than any "
                         f"manager accepts for a config (max_config_bytes, {default} KiB by default)")
    return content


CONFIG_HELP = "NAME[,target=/PATH][,mode=0444], e.g. app-conf-v2,target=/etc/app.conf,mode=0440"


def parse_mode(value: object) -> object:
    """A file mode from octal text ("0444", "0o444", "444") or a number (YAML reads 0444 as octal);
    anything else is left for the API's model to judge. Raises ValueError for text that is not octal."""
    if not isinstance(value, str):
        return value
    text = value.strip().lower().removeprefix("0o")
    if not text or set(text) - set("01234567"):
        raise ValueError(f"mode {value!r}: expected an octal file mode such as 0444")
    return int(text, 8)


def parse_config_ref(value: object) -> object:
    """{"name", "target"?, "mode"?} from "NAME[,target=/PATH][,mode=0444]" or a mapping (its mode
    converted from octal text); anything else is left for the API's model to judge. Raises ValueError."""
    if isinstance(value, Mapping):
        given = dict(value)
        if "mode" in given:
            given["mode"] = parse_mode(given["mode"])
        return given
    if not isinstance(value, str):
        return value
    name, *options = [part.strip() for part in value.split(",")]
    if not name or "=" in name:
        raise ValueError(f"expected {CONFIG_HELP}, got {value!r}")
    ref: dict[str, Any] = {"name": name}
    for option in options:
        key, sep, text = option.partition("=")
        key = key.strip().lower()
        if not sep or key not in ("target", "mode") or key in ref:
            raise ValueError(f"{option!r} in {value!r}: expected target=/PATH or mode=OCTAL, each once")
        ref[key] = parse_mode(text) if key == "mode" else text.strip()
    return ref


def capability(value: object) -> object:
    """A capability as the spec names it: "cap_net_admin" and "net_admin" are NET_ADMIN."""
    if not isinstance(value, str):
        return value
    name = value.strip().upper()
    return name.removeprefix("CAP_")


def stop_signal(value: object) -> object:
    """A signal as the spec names it: "term", "TERM", "SIGTERM" and 15 are SIGTERM."""
    import signal

    if isinstance(value, int) and not isinstance(value, bool) or isinstance(value, str) and value.isdigit():
        try:
            return signal.Signals(int(value)).name
        except ValueError:
            return str(value)
    if not isinstance(value, str):
        return value
    name = value.strip().upper()
    return name if name.startswith("SIG") else f"SIG{name}"


def container_part(value: object) -> object:
    """The container options of an `apply` document in the API's form: devices and ulimits in their
    text forms, capabilities and signals however written, sysctl values that YAML read as numbers."""
    if not isinstance(value, Mapping):
        return value
    part = dict(value)
    if isinstance(part.get("devices"), list):
        part["devices"] = [parse_device(item) for item in part["devices"]]
    if isinstance(part.get("ulimits"), Mapping):
        part["ulimits"] = {name: parse_ulimit(limit) for name, limit in part["ulimits"].items()}
    for key in ("cap_add", "cap_drop"):
        if isinstance(part.get(key), list):
            part[key] = [capability(item) for item in part[key]]
    if part.get("stop_signal") is not None:
        part["stop_signal"] = stop_signal(part["stop_signal"])
    if isinstance(part.get("user"), int) and not isinstance(part["user"], bool):
        part["user"] = str(part["user"])  # `user: 1000` in YAML
    if isinstance(part.get("sysctls"), Mapping):
        part["sysctls"] = {
            key: str(v) if isinstance(v, int | float) and not isinstance(v, bool) else v
            for key, v in part["sysctls"].items()
        }
    return part


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
        return _ABSENT_MEANS.get(field)
    if field == "publish" and isinstance(value, list):
        # A published port stored without a mode is host mode (made before ingress existed); what we
        # send always names its mode, so only a stored item lacks one.
        value = [{"mode": "host", **item} if isinstance(item, Mapping) else item for item in value]
    from pydantic import ValidationError

    from warren.api.models import ServiceUpdate

    try:
        model = ServiceUpdate.model_validate({field: value}, strict=False)
    except ValidationError:
        return value  # not ours to judge here; differs from any valid value, so it gets replaced
    dumped = model.model_dump(exclude_none=True)
    return dumped.get(field)


# Fields a stored spec leaves out while they have their default (warren.spec.service): absent means it.
_ABSENT_MEANS: dict[str, object] = {"volume_policy": DEFAULT_VOLUME_POLICY, "discovery": DEFAULT_DISCOVERY}


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
