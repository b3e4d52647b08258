"""Cluster events (GET /v1/events): read from this manager's own ring (warren.store.events), never
from the leader's. Every manager derives the same events with the same ids from the log it applies,
so any manager can serve them, and a client that loses its manager resumes on another one.

The query is checked here: `since` is an event id ("1234.0", exclusive) or a duration ("90s", "10m",
"2h", "1d", "500ms": events newer than now minus that); filters are by type, service, node and task
(OR within one key, AND between keys); `limit` is bounded by EventSettings.max_limit.
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from warren.config import EventSettings
from warren.errors import InvalidError
from warren.store import events as ev

_DURATION = re.compile(r"^([0-9]{1,9})(ms|s|m|h|d)$")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
# A filter value: a name or id, as the API takes them (no control characters, bounded).
_VALUE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@/-]{0,252}$")
# Values one filter key may list.
MAX_FILTER_VALUES = 64


@dataclass(frozen=True, slots=True)
class EventQuery:
    since_key: tuple[int, int] | None
    newer_than: float | None
    since: str | None  # as the client gave it
    types: frozenset[str]
    services: frozenset[str]
    nodes: frozenset[str]
    tasks: frozenset[str]
    limit: int

    def match(self, e: ev.Event) -> bool:
        if self.types and e.type not in self.types:
            return False
        if self.services and not (
            (e.type == "service" and e.actor in self.services) or e.attributes.get("service") in self.services
        ):
            return False
        if self.nodes and not (
            (e.type in ("node", "manager") and e.actor in self.nodes)
            or e.attributes.get("node") in self.nodes
        ):
            return False
        return not self.tasks or (e.type == "task" and e.actor in self.tasks)

    @property
    def filtered(self) -> bool:
        return bool(self.types or self.services or self.nodes or self.tasks)


# What a followed stream yields: ("event", Event), ("gap", {...}), ("keepalive", None) or
# ("overflow", {...}); the stream ends after an overflow, and when the manager stops.
Item = tuple[str, Any]


class Events:
    def __init__(
        self, ring: ev.EventRing, settings: EventSettings, clock: Callable[[], float] = time.time
    ) -> None:
        self.ring = ring
        self.settings = settings
        self._clock = clock

    def query(
        self,
        *,
        since: str | None = None,
        types: Iterable[str] = (),
        services: Iterable[str] = (),
        nodes: Iterable[str] = (),
        tasks: Iterable[str] = (),
        limit: int | None = None,
    ) -> EventQuery:
        """The checked query; InvalidError naming what is wrong."""
        since_key = newer_than = None
        if since is not None and since != "":
            since_key = ev.parse_id(since)
            if since_key is None:
                m = _DURATION.match(since)
                if m is None:
                    raise InvalidError(
                        f"since {since[:64]!r} is neither an event id (like 1234.0) nor a duration "
                        "(like 90s, 10m, 2h, 1d)"
                    )
                newer_than = self._clock() - int(m.group(1)) * _UNIT_S[m.group(2)]
        type_set = _values("type", types)
        unknown = sorted(type_set - set(ev.TYPES))
        if unknown:
            raise InvalidError(f"unknown event type {unknown[0]!r}: one of {', '.join(ev.TYPES)}")
        if limit is None:
            limit = self.settings.default_limit
        if not 1 <= limit <= self.settings.max_limit:
            raise InvalidError(f"limit must be between 1 and {self.settings.max_limit}, not {limit}")
        return EventQuery(
            since_key,
            newer_than,
            since or None,
            type_set,
            _values("service", services),
            _values("node", nodes),
            _values("task", tasks),
            limit,
        )

    def read(self, q: EventQuery) -> dict[str, Any]:
        """The held events the query asks for, as the API answers them: with `since`, the oldest
        `limit` after it (ask again from the last one for more); without, the newest `limit`."""
        match = q.match if q.filtered else None
        if q.since_key is None and q.newer_than is None:
            found = self.ring.read(match=match)
            events = found.events[-q.limit :]
        else:
            found = self.ring.read(
                q.since_key, newer_than=q.newer_than, match=match, limit=q.limit, asked=q.since
            )
            events = found.events
        return {
            "events": [e.to_doc() for e in events],
            "first": found.first,
            "last": found.last,
            "lost": found.lost,
        }

    async def follow(self, q: EventQuery) -> AsyncIterator[Item]:
        """The held events after `since` (a gap first if some are gone), then live ones as they are
        applied; a keep-alive when none came for EventSettings.keepalive_s. Ends with an overflow when
        the reader falls more than EventSettings.stream_queue events behind, and when the manager
        stops."""
        sub = self.ring.subscribe(self.settings.stream_queue)  # before reading: nothing falls between
        try:
            match = q.match if q.filtered else None
            found = self.ring.read(q.since_key, newer_than=q.newer_than, match=match, asked=q.since)
            last = ev.parse_id(found.last) if found.last else None
            if q.since_key is not None and last is not None and q.since_key > last:
                last = q.since_key
            if found.lost is not None:
                yield ("gap", found.lost)
            for event in found.events:
                yield ("event", event)
            while True:
                batch = await sub.next_batch(self.settings.keepalive_s)
                if sub.closed:
                    return
                if sub.overflowed:
                    after = ev.format_key(last) if last else q.since
                    yield (
                        "overflow",
                        {
                            "after": after,
                            "message": f"this stream fell more than {self.settings.stream_queue} events "
                            f"behind and ends: resume from {after}",
                        },
                    )
                    return
                if sub.reset:
                    sub.reset = False
                    found = self.ring.read(last, match=match, asked=ev.format_key(last) if last else None)
                    if found.lost is not None:
                        yield ("gap", found.lost)
                    batch = found.events
                elif not batch:
                    yield ("keepalive", None)
                    continue
                for event in batch:
                    if last is not None and event.key <= last:
                        continue
                    last = event.key
                    if match is None or match(event):
                        yield ("event", event)
        finally:
            sub.close()


def _values(key: str, given: Iterable[str]) -> frozenset[str]:
    """The values of one filter key, each given alone or as a comma list."""
    values: set[str] = set()
    for item in given:
        for value in item.split(","):
            value = value.strip()
            if not value:
                continue
            if not _VALUE.match(value):
                raise InvalidError(f"{key} filter {value[:64]!r} is not a name or id")
            values.add(value)
    if len(values) > MAX_FILTER_VALUES:
        raise InvalidError(f"at most {MAX_FILTER_VALUES} {key} values")
    return frozenset(values)
