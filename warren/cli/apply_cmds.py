"""`warren apply -f FILE.yaml`: make the cluster's services what YAML documents say.

Every document of every file is checked first, then compared with the cluster (one consistent read);
only when all of them are good does anything change: absent services are created, those whose given
fields mean something else are patched with exactly those fields, the rest are left alone. Applying
the same files again changes nothing and sends no write.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from warren.cli import specs, waiting
from warren.cli.apply_configs import ConfigItem, config_items, is_configs_document, named_by, plan_configs
from warren.cli.converge import Change, Kind
from warren.cli.output import render, safe_line
from warren.cli.parsing import Subparsers, add_command
from warren.client import ManagerClient
from warren.errors import NotConvergedError
from warren.formats import parse_size

if TYPE_CHECKING:
    import yaml

APPLY_EPILOG = """\
A document is one service, with the fields of the API's service body (docs/api.md):

  kind: service               # optional; nothing else is accepted
  name: web
  image: nginx:1.27
  replicas: 3
  env: {TZ: UTC}
  publish: ["8080:80", {mode: host, published: 8443, target: 443}]   # without mode: ingress
  resources: {cpus: 0.5, memory: 256m}        # memory: bytes or a size (k/m/g are binary)
  health: {kind: http, port: 80, path: /, interval_s: 2s}   # *_s: seconds or 500ms, 1m...
  update: {parallelism: 1, order: start-first}
  secrets: [db-password]      # each task gets /run/secrets/db-password (warren secret create)
  mounts:                     # docs/volumes.md; --mount's text, or the fields
    - type=volume,src=web-data,dst=/var/lib/web
    - {type: bind, source: /srv/media, target: /media, read_only: true}
    - {type: tmpfs, target: /cache, size: 64m}
  configs: ["nginx-conf-v1,target=/etc/nginx/conf.d/default.conf", {name: motd-v1, mode: 0440}]
  stop_timeout_s: 30s         # the grace after the stop signal (service create --stop-grace-period)
  volume_policy: reschedule   # or wait (default): when the node holding its volume is down (docs/volumes.md)
  discovery: false            # other tasks do not find it by name (default: true; docs/worker-protocol.md)
  container:                  # container options (docs/container-options.md); each off by default
    user: "1000:1000"
    read_only: true
    cap_add: [NET_ADMIN]      # cap_drop: [ALL]; capabilities without CAP_, any case
    devices: [/dev/ttyUSB0, "/dev/video0:/dev/cam:r", {host: /dev/null, container: /dev/radio}]
    ulimits: {nofile: "1024:4096", nproc: 64}
    sysctls: {net.ipv4.ip_forward: 1}
    stop_signal: SIGINT       # also workdir, hostname, network: host, init, privileged
  ---
  name: worker
  image: busybox
  command: sleep infinity     # a string is split as a shell would

Fields a document leaves out keep their current value on an existing service (their defaults on a new
one); a nested part that is given (health, restart, update, resources, container) is replaced whole. Quote
HOST:CONTAINER ports: YAML reads an unquoted 5353:53 as a number.

A document with `configs:` alone declares configs (docs/configs.md), created when missing, before the
services; a file is read relative to the apply file. A config never changes: one that exists with
another content is refused (give the new content a new name, and name that in the services):

  configs:
    nginx-conf-v1: {file: ./nginx/default.conf}
    motd-v1: {content: "hello from warren\\n"}

Prints one line per config and service: config/NAME created|unchanged, service/NAME
created|updated|unchanged. Every document is checked before anything changes; any problem (named by
file and document number) changes nothing, exit 1.

examples:
  warren apply -f stack.yaml
  warren apply -f web.yaml -f workers.yaml --dry-run
  cat stack.yaml | warren apply -f -
"""

# Fields whose value is seconds: a number or a duration string ("500ms", "1m30s").
_SECONDS = {None: ("stop_timeout_s",), "restart": ("delay_s",),
            "health": ("interval_s", "timeout_s", "start_period_s"), "update": ("delay_s", "monitor_s")}


def register(commands: Subparsers) -> None:
    apply = add_command(commands, "apply", "create or update services from YAML files (idempotent)",
                        "Create or update the services described by YAML files, one service per document.",
                        epilog=APPLY_EPILOG)
    apply.add_argument("-f", "--filename", dest="files", action="append", required=True, metavar="FILE",
                       help="YAML file of service documents ('-' reads standard input; repeatable)")
    apply.add_argument("--dry-run", action="store_true",
                       help="check the files and say what would change, without changing anything")
    apply.add_argument("-d", "--detach", action="store_true",
                       help="return once the changes are made, without waiting for each created or updated "
                       "service to converge (by default: wait, as 'warren service update' does; exit 1 if "
                       "one fails)")
    apply.set_defaults(client_handler=apply_files)


@dataclass
class Document:
    """One checked service document: `wanted` holds the fields it gives, as the API takes them."""

    where: str  # "stack.yaml: document 2"
    name: str
    wanted: dict[str, Any]


@dataclass
class Step:
    document: Document
    result: str  # created | updated | unchanged
    body: dict[str, Any] = field(default_factory=dict)  # POST body or PATCH changes
    version: int | None = None  # of the service read, for If-Match


class _Problem(Exception):
    """A field of a document is wrong: (where in the document, what)."""

    def __init__(self, where: str, what: str) -> None:
        super().__init__(f"{where}: {what}" if where else what)


def apply_files(args: argparse.Namespace, client: ManagerClient) -> int:
    items: list[ConfigItem] = []
    documents, problems = load([(name, _read(name)) for name in args.files], items)
    create: list[ConfigItem] = []
    same: list[ConfigItem] = []
    if not problems:
        current = {str(s.get("name")): s for s in client.list_services(consistent=True)}
        steps, problems = plan(documents, current)
        needed = {name: d.where for d in documents for name in named_by(d.wanted)}
        if items or needed:  # only then: a cluster of an older Warren has no configs to list
            existing = {str(c.get("name")): c for c in client.list_configs(consistent=True)}
            create, same, more = plan_configs(items, existing, needed)
            problems += more
    if problems:
        for problem in problems:
            print(f"warren: {safe_line(str(problem))}", file=sys.stderr)
        if len(problems) > 1:
            print(f"warren: {len(problems)} problems; nothing was changed", file=sys.stderr)
        return 1
    results: list[dict[str, Any]] = []
    suffix = " (dry run)" if args.dry_run else ""
    # Configs first: the services that name them are refused until they exist.
    for item, outcome in [(i, "created") for i in create] + [(i, "unchanged") for i in same]:
        made = None
        if not args.dry_run and outcome == "created":
            made = client.create_config(item.name, item.content).get("version")
        results.append({"kind": "config", "name": item.name, "result": outcome, "changed": [],
                        "version": made})
        if args.format == "table":
            print(safe_line(f"config/{item.name} {outcome}{suffix}"), flush=True)
    changes: list[Change] = []
    for step in steps:
        version = step.version
        answer: dict[str, Any] | None = None
        if not args.dry_run and step.result == "created":
            answer = client.create_service(step.body)
        elif not args.dry_run and step.result == "updated":
            # If-Match: a change made since the comparison must not be overwritten unseen.
            answer = client.update_service(step.document.name, step.body, if_match=step.version)
        if answer is not None:
            version = answer.get("version")
            change = _change(step, answer)
            if change is not None:
                changes.append(change)
        result = {"kind": "service", "name": step.document.name, "result": step.result,
                  "changed": sorted(k for k in step.body if k != "name"), "version": version}
        results.append(result)
        if args.format == "table":  # as it happens: a failure later leaves the earlier lines true
            print(safe_line(f"service/{step.document.name} {step.result}{suffix}"), flush=True)
    if args.format != "table":
        print(render(results, args.format, lambda: ""), end="", flush=True)
    return 0 if args.detach else _wait_all(client, changes)


def _change(step: Step, answer: dict[str, Any]) -> Change | None:
    version, since = answer.get("version"), answer.get("updated_at")
    if not isinstance(version, int) or not isinstance(since, int | float):
        return None
    kind: Kind = "create" if step.result == "created" else "update"
    return Change(kind, step.document.name, version, float(since))


def _wait_all(client: ManagerClient, changes: list[Change]) -> int:
    """Wait for each change in turn (the cluster works on all of them at once); 1 if any failed (each
    said why on its own line), 130 on Ctrl-C."""
    status = 0
    for change in changes:
        try:
            if waiting.wait(client, change) == waiting.INTERRUPTED:
                return waiting.INTERRUPTED
        except NotConvergedError as exc:
            print(f"warren: {safe_line(str(exc))}", file=sys.stderr)
            status = 1
    return status


def _read(name: str) -> str:
    if name == "-":
        return sys.stdin.read()
    with open(name, encoding="utf-8") as handle:
        return handle.read()


# -- checking ---------------------------------------------------------------------------------------

def load(
    files: list[tuple[str, str]], configs: list[ConfigItem] | None = None
) -> tuple[list[Document], list[str]]:
    """The service documents of every (file name, text), and every problem found in any of them; the
    configs that configs documents declare are added to `configs` (their files read relative to the
    apply file's directory, or the working directory for standard input)."""
    documents: list[Document] = []
    problems: list[str] = []
    first_seen: dict[str, str] = {}
    for name, text in files:
        source = "<stdin>" if name == "-" else name
        found = 0
        for number, raw, error in _yaml_documents(text):
            where = f"{source}: document {number}"
            if error is not None:
                problems.append(f"{where}: {error}")
                continue
            if raw is None:
                continue  # an empty document (e.g. after a trailing ---)
            found += 1
            if is_configs_document(raw):
                assert isinstance(raw, Mapping)
                base = "." if name == "-" else os.path.dirname(name) or "."
                items, more = config_items(where, raw, base)
                problems += more
                if configs is not None:
                    configs += items
                continue
            label = where
            if isinstance(raw, Mapping) and isinstance(raw.get("name"), str):
                label = f"{where} ({raw['name']})"
            try:
                document = check(label, raw)
            except _Problem as exc:
                problems.append(f"{label}: {exc}")
                continue
            if document.name in first_seen:
                earlier = first_seen[document.name]
                problems.append(f"{label}: service {document.name!r} is already in {earlier}")
                continue
            first_seen[document.name] = where
            documents.append(document)
        if found == 0 and not any(p.startswith(f"{source}: ") for p in problems):
            problems.append(f"{source}: no service documents")
    return documents, problems


def _yaml_documents(text: str) -> Iterator[tuple[int, object, str | None]]:
    """(number from 1, document, None) per document; (number, None, message) for one YAML cannot read,
    after which the rest of the file cannot be read either."""
    import yaml  # loaded by `apply` alone

    loader = yaml.safe_load_all(text)
    number = 0
    while True:
        number += 1
        try:
            document = next(loader)
        except StopIteration:
            return
        except yaml.YAMLError as exc:
            yield number, None, _yaml_problem(exc)
            return
        yield number, document, None


def _yaml_problem(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    return f"invalid YAML{at}: {problem}"


def check(label: str, raw: object) -> Document:
    """A document made into the API's body (values in the friendly syntaxes converted) and checked by
    the API's own model; _Problem names the first field in error."""
    if not isinstance(raw, Mapping):
        raise _Problem("", f"expected a mapping of service fields, got {_kind_of(raw)}")
    body = dict(raw)
    kind = body.pop("kind", "service")
    if kind != "service":
        raise _Problem("kind", f"{kind!r} is not supported (only 'service')")
    _convert(body)
    from pydantic import ValidationError

    from warren.api.models import ServiceCreate

    try:
        model = ServiceCreate.model_validate(body)
    except ValidationError as exc:
        problems = specs.validation_problems(exc)
        where, what = problems[0]
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise _Problem(where, what + more) from exc
    given = model.model_fields_set
    # Nested parts whole, with their defaults; a field given as null stays (as None) to be refused later
    # if the service has a value: the API cannot unset one.
    wanted: dict[str, Any] = dict.fromkeys(given)
    wanted.update(model.model_dump(include=given, exclude_none=True))
    return Document(where=label, name=model.name, wanted=wanted)


def _convert(body: dict[str, Any]) -> None:
    """Durations, sizes, published ports, command strings and scalar env/label values into the API's
    types, in place."""
    for part, names in _SECONDS.items():
        if part is None:
            target = body
        else:
            nested = body.get(part)
            if not isinstance(nested, Mapping):
                continue
            target = body[part] = dict(nested)
        for name in names:
            if name in target and target[name] is not None:
                target[name] = _value(specs.parse_seconds, target[name], _path(part, name))
    resources = body.get("resources")
    if isinstance(resources, Mapping) and resources.get("memory") is not None:
        memory = _value(parse_size, resources["memory"], "resources.memory")
        body["resources"] = {**resources, "memory": memory}
    publish = body.get("publish")
    if isinstance(publish, list):
        # "8080:80", "mode=host,published=8080,target=80" or a mapping (mode, published/target or
        # host/container, protocol); each gets its mode (ingress unless given, or UDP: host).
        body["publish"] = [
            _value(specs.parse_publish, item, f"publish.{i}") for i, item in enumerate(publish)
        ]
    if isinstance(body.get("command"), str):
        body["command"] = _value(_split, body["command"], "command")
    health = body.get("health")
    if isinstance(health, Mapping) and isinstance(health.get("cmd"), str):
        body["health"] = {**health, "cmd": _value(_split, health["cmd"], "health.cmd")}
    for name in ("env", "labels"):
        values = body.get(name)
        if isinstance(values, Mapping):
            body[name] = {key: _scalar_text(value) for key, value in values.items()}
    if "container" in body:
        body["container"] = _value(specs.container_part, body["container"], "container")
    mounts = body.get("mounts")
    if isinstance(mounts, list):
        body["mounts"] = [_value(specs.parse_mount, item, f"mounts.{i}") for i, item in enumerate(mounts)]
    configs = body.get("configs")
    if isinstance(configs, list):  # "NAME[,target=...,mode=...]" or a mapping (mode in octal text)
        body["configs"] = [
            _value(specs.parse_config_ref, item, f"configs.{i}") for i, item in enumerate(configs)
        ]


def _value(parse: Any, value: object, where: str) -> Any:
    try:
        return parse(value)
    except ValueError as exc:
        raise _Problem(where, str(exc)) from exc


def _split(text: str) -> list[str]:
    return shlex.split(text)


def _scalar_text(value: object) -> object:
    """YAML reads `PORT: 8080` and `DEBUG: true` as a number and a boolean; the environment wants text."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return value


def _path(part: str | None, name: str) -> str:
    return name if part is None else f"{part}.{name}"


def _kind_of(value: object) -> str:
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a string"
    return type(value).__name__


# -- planning ---------------------------------------------------------------------------------------

def plan(documents: list[Document],
         services: Mapping[str, Mapping[str, Any]]) -> tuple[list[Step], list[str]]:
    """What to do for each document given the cluster's `services` (by name), and what cannot be done."""
    steps: list[Step] = []
    problems: list[str] = []
    for document in documents:
        service = services.get(document.name)
        if service is None:
            body = {k: v for k, v in document.wanted.items() if v is not None}
            steps.append(Step(document, "created", {"name": document.name, **body}))
            continue
        spec = service.get("spec")
        current = spec if isinstance(spec, Mapping) else {}
        wanted = {k: v for k, v in document.wanted.items() if k != "name"}
        changes = specs.changed_fields(current, wanted)
        cleared = sorted(k for k, v in changes.items() if v is None)
        if cleared:
            problems.append(f"{document.where}: {', '.join(cleared)}: null cannot remove what service "
                            f"{document.name} has (the API only replaces values); leave the field out")
            continue
        version = service.get("version")
        steps.append(Step(document, "updated" if changes else "unchanged", changes,
                          version if isinstance(version, int) else None))
    return steps, problems
