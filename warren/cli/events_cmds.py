"""`warren events`: the cluster's events (GET /v1/events), once or followed, as `docker events` shows
them: one line per event, or one JSON object per line with `-o json`."""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import orjson

from warren.cli.output import safe_line
from warren.cli.parsing import Subparsers, UsageError, add_command
from warren.client import ManagerClient
from warren.client.manager import EVENT_FILTERS

DESCRIPTION = """\
Print the cluster's events: leader elections, managers and nodes joining, going down, drained or
removed, task state changes with their reason, services created, updated, scaled or rolled back and
their rolling updates' progress, secrets and configs created or removed (names only), certificates
issued or revoked. Any manager answers from the events it holds (the last 10,000 of the last hour by
default); every manager gives an event the same id.

With --follow, new events are printed as they happen until Ctrl-C. When the manager goes away (killed,
stopped), the next one of --manager's list is asked for the events after the last one printed: none
comes twice, and a line on stderr says so if some were lost."""

EPILOG = """\
examples:
  warren events --since 10m
  warren events --since 10m --filter type=task --filter service=web
  warren events --filter type=node,manager -f
  warren events -f -o json --manager 10.0.0.1:8443,10.0.0.2:8443,10.0.0.3:8443
filters: type (leader, manager, node, task, service, secret, config, certificate), service, node, task;
several values of one key match any of them (type=node,manager), several keys must all match."""


def register(commands: Subparsers) -> None:
    events = add_command(commands, "events", "print the cluster's events (leader, nodes, tasks, services)",
                         DESCRIPTION, epilog=EPILOG)
    events.add_argument("--since", metavar="DUR|ID",
                        help="events after this event id, or of the last DUR (90s, 10m, 2h, 1d); "
                        "default: the latest held (with -f: from now on)")
    events.add_argument("--filter", action="append", default=[], metavar="KEY=VALUE[,...]",
                        help="only events that match: type=, service=, node=, task= (repeatable)")
    events.add_argument("-n", "--limit", type=int, metavar="N",
                        help="without -f: at most N events (the manager's maximum applies)")
    events.add_argument("-f", "--follow", action="store_true", help="keep printing new events until Ctrl-C")
    events.set_defaults(client_handler=events_command)


def parse_filters(given: Iterable[str]) -> dict[str, list[str]]:
    """{key: values} from --filter arguments: `type=task,service=web` (two keys), `type=node,manager`
    (two values of one key: a part without '=' adds to the key before it)."""
    filters: dict[str, list[str]] = {}
    for item in given:
        key: str | None = None
        for part in item.split(","):
            part = part.strip()
            if not part:
                continue
            name, eq, value = part.partition("=")
            if eq:
                key = name.strip()
                if key not in EVENT_FILTERS:
                    keys = ", ".join(EVENT_FILTERS)
                    raise UsageError(f"--filter {item!r}: unknown key {key!r} (one of {keys})")
                part = value.strip()
            elif key is None:
                raise UsageError(f"--filter {item!r}: expected KEY=VALUE (keys: {', '.join(EVENT_FILTERS)})")
            if not part:
                raise UsageError(f"--filter {item!r}: {key} has no value")
            filters.setdefault(key, []).append(part)
    return filters


def format_event(event: Mapping[str, Any]) -> str:
    """One line, as `docker events` prints: time, type, action, actor, (attributes)."""
    at = event.get("time")
    when = (
        datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        if isinstance(at, int | float) and not isinstance(at, bool)
        else "?"
    )
    attrs = event.get("attributes")
    pairs = ", ".join(
        f"{k}={v}" for k, v in (attrs.items() if isinstance(attrs, dict) else ()) if v is not None and v != ""
    )
    line = f"{when} {event.get('type')} {event.get('action')} {event.get('actor')}"
    return safe_line(f"{line} ({pairs})" if pairs else line)


def _print(event: Mapping[str, Any], fmt: str) -> None:
    if fmt == "table":
        sys.stdout.write(format_event(event) + "\n")
    else:  # json and yaml: one JSON object per line (a stream, as `docker events --format json`)
        sys.stdout.write(orjson.dumps(event).decode() + "\n")
    sys.stdout.flush()


def _note(text: str) -> None:
    sys.stderr.write(f"warren: {safe_line(text)}\n")
    sys.stderr.flush()


def events_command(args: argparse.Namespace, client: ManagerClient) -> int:
    filters = parse_filters(args.filter)
    if args.limit is not None and args.limit < 1:
        raise UsageError("--limit must be at least 1")
    if not args.follow:
        answer = client.events(since=args.since, filters=filters, limit=args.limit)
        lost = answer.get("lost")
        if isinstance(lost, dict):
            _note(f"events lost: {lost.get('message')}")
        for event in answer.get("events") or []:
            if isinstance(event, dict):
                _print(event, args.format)
        return 0
    since = args.since
    if since is None:  # from now on: after the newest event the manager holds
        since = client.events(limit=1).get("last") or None
    stream = client.follow_events(since=since, filters=filters)
    with contextlib.closing(stream):
        try:
            for kind, body in stream:
                if kind == "event":
                    _print(body, args.format)
                elif kind == "gap":
                    _note(f"events lost: {body.get('message')}")
                elif kind == "reconnect":
                    _note(f"{body.get('reason')} (manager {body.get('manager')}); resuming after "
                          f"{body.get('since') or 'now'}")
        except KeyboardInterrupt:
            return 0
    return 0
