"""The client of a manager's HTTP API (/v1): one method per call the CLI and the drill make.

The wire under it (addresses, TLS, retries, errors) is warren.client.wire.
"""

from __future__ import annotations

import base64
from collections.abc import Generator, Mapping, Sequence
from typing import Any, BinaryIO
from urllib.parse import quote

from warren.client.wire import Connection, JSONObject, describe, netloc
from warren.errors import NotFoundError, UnavailableError, WarrenError


class ManagerClient(Connection):
    """Synchronous client of one manager or several (see Connection); use as a context manager."""

    # -- cluster ------------------------------------------------------------------------------------

    def cluster_info(self) -> JSONObject:
        return self._object(self.request("GET", "/v1/cluster"))

    def create_join_token(self, role: str, *, rotate: bool = False, ttl_s: float | None = None) -> JSONObject:
        body: dict[str, Any] = {"role": role, "rotate": rotate}
        if ttl_s is not None:
            body["ttl_s"] = ttl_s
        return self._object(self.request("POST", "/v1/cluster/join-tokens", json=body))

    def backup(self, sink: BinaryIO) -> int:
        """Stream a consistent copy of the cluster state into `sink`; the number of bytes written."""
        import httpx  # streams go over httpx (warren.client.wire)

        response = self._stream("GET", "/v1/cluster/backup")
        written = 0
        try:
            for chunk in response.iter_bytes():
                sink.write(chunk)
                written += len(chunk)
        except httpx.HTTPError as exc:
            raise UnavailableError(f"backup from {self.address} broke off: {describe(exc)}") from exc
        finally:
            response.close()
        return written

    # -- nodes --------------------------------------------------------------------------------------

    def list_nodes(self) -> list[JSONObject]:
        return self._list(self.request("GET", "/v1/nodes"))

    def get_node(self, name: str) -> JSONObject:
        return self._object(self.request("GET", f"/v1/nodes/{_segment(name)}"))

    def remove_node(self, name: str) -> JSONObject:
        return self._object(self.request("DELETE", f"/v1/nodes/{_segment(name)}"))

    def set_node_availability(self, name: str, availability: str) -> JSONObject:
        """`drain` (tasks move elsewhere, none placed there) or `active`; the node as it is now."""
        path = f"/v1/nodes/{_segment(name)}/availability"
        return self._object(self.request("POST", path, json={"availability": availability}))

    # -- services -----------------------------------------------------------------------------------

    def create_service(self, spec: Mapping[str, Any]) -> JSONObject:
        return self._object(self.request("POST", "/v1/services", json=dict(spec)))

    def list_services(self, *, consistent: bool = False) -> list[JSONObject]:
        """With `consistent`, through the leader's read barrier: what a following write will change."""
        return self._list(self.request("GET", "/v1/services", params=_consistent(consistent)))

    def get_service(self, name: str, *, consistent: bool = False) -> JSONObject:
        path = f"/v1/services/{_segment(name)}"
        return self._object(self.request("GET", path, params=_consistent(consistent)))

    def update_service(self, name: str, changes: Mapping[str, Any], *,
                       if_match: int | None = None) -> JSONObject:
        """PATCH the given fields; with `if_match` (the version read), a change made meanwhile is a 409."""
        headers = None if if_match is None else {"If-Match": str(if_match)}
        path = f"/v1/services/{_segment(name)}"
        return self._object(self.request("PATCH", path, json=dict(changes), headers=headers))

    def rollback_service(self, name: str) -> JSONObject:
        return self._object(self.request("POST", f"/v1/services/{_segment(name)}/rollback"))

    def remove_service(self, name: str) -> JSONObject:
        return self._object(self.request("DELETE", f"/v1/services/{_segment(name)}"))

    def list_tasks(self, name: str) -> list[JSONObject]:
        return self._list(self.request("GET", f"/v1/services/{_segment(name)}/tasks"))

    # -- configs ------------------------------------------------------------------------------------

    def create_config(self, name: str, content: bytes) -> JSONObject:
        body = {"name": name, "data": base64.b64encode(content).decode("ascii")}
        return self._object(self.request("POST", "/v1/configs", json=body))

    def list_configs(self, *, consistent: bool = False) -> list[JSONObject]:
        """Without content: each one's size and SHA-256 (`digest`)."""
        return self._list(self.request("GET", "/v1/configs", params=_consistent(consistent)))

    def get_config(self, name: str) -> JSONObject:
        """With its content (`data`, base64)."""
        return self._object(self.request("GET", f"/v1/configs/{_segment(name)}"))

    def remove_config(self, name: str) -> JSONObject:
        return self._object(self.request("DELETE", f"/v1/configs/{_segment(name)}"))


    # -- volumes ------------------------------------------------------------------------------------

    def list_volumes(self) -> list[JSONObject]:
        return self._list(self.request("GET", "/v1/volumes"))

    def get_volume(self, name: str) -> JSONObject:
        return self._object(self.request("GET", f"/v1/volumes/{_segment(name)}"))

    def remove_volume(self, name: str, node: str | None = None) -> JSONObject:
        """Ask for the removal of volume `name` from `node` (None: the one node that has it); the request
        as recorded, with `node_state`."""
        params = None if node is None else {"node": node}
        return self._object(self.request("DELETE", f"/v1/volumes/{_segment(name)}", params=params))

    def wait_volume_removed(self, name: str, node: str, timeout_s: float, poll_s: float) -> str:
        """Wait until `node` no longer has volume `name` ("removed"), the node is not ready (its state,
        e.g. "down"), or `timeout_s` passed ("waiting")."""
        deadline = self._clock() + timeout_s
        while True:
            try:
                found = self.get_volume(name)
            except NotFoundError:
                return "removed"
            here = [n for n in found.get("nodes") or [] if isinstance(n, dict) and n.get("node") == node]
            if not here:
                return "removed"
            state = here[0].get("node_state")
            if state != "ready":
                return str(state)
            if self._clock() >= deadline:
                return "waiting"
            self._sleep(min(poll_s, max(0.0, deadline - self._clock())))

    def service_logs(self, name: str, *, task: str | None = None, follow: bool = False,
                     tail: int | str | None = None) -> Generator[str, None, None]:
        """The service's (or one task's) output as text, chunk by chunk as the manager sends it.

        `tail`: lines from the end to start with, or "all"; None: the manager's default (100).
        Opening the stream is retried like any read (and a redirect to the leader followed); once text
        has arrived, a broken stream ends with UnavailableError and is not sent again (it would repeat
        or lose lines). While following, there is no read timeout: a quiet task may print nothing for
        hours. Closing the iterator closes the stream.
        """
        import httpx  # streams go over httpx (warren.client.wire)

        params = {"follow": "true" if follow else "false"}
        if task is not None:
            params["task"] = task
        if tail is not None:
            params["tail"] = str(tail)
        timeout = httpx.Timeout(self.settings.request_timeout_s, read=None) if follow else None
        response = self._stream("GET", f"/v1/services/{_segment(name)}/logs", params=params, timeout=timeout)
        try:
            yield from response.iter_text()
        except httpx.HTTPError as exc:
            where = netloc(str(response.url)) or self.address
            raise UnavailableError(f"log stream from manager at {where} broke off: {describe(exc)}") from exc
        finally:
            response.close()

    # -- events -------------------------------------------------------------------------------------

    def events(self, *, since: str | None = None, filters: Mapping[str, Sequence[str]] | None = None,
               limit: int | None = None) -> JSONObject:
        """{"events": [...], "first", "last", "lost"} as one answer."""
        params = _event_params(since, filters or {})
        if limit is not None:
            params["limit"] = str(limit)
        return self._object(self.request("GET", "/v1/events", params=params))

    def follow_events(self, *, since: str | None = None,
                      filters: Mapping[str, Sequence[str]] | None = None) -> Generator[EventItem, None, None]:
        """The held events after `since`, then live ones, for ever. When the stream breaks (its manager
        stopped or was killed, or said nothing for ClientSettings.events_idle_s, twice its keep-alive)
        the next manager of the list is asked from the last event id received: every manager gives
        an event the same id, so nothing comes twice, and a gap says what it no longer holds. Opening
        a stream is retried like any read; UnavailableError once no manager answers in time."""
        import httpx  # streams go over httpx (warren.client.wire)

        from warren.client.sse import Parser

        last = since
        chosen = filters or {}
        timeout = httpx.Timeout(self.settings.request_timeout_s, read=self.settings.events_idle_s)
        while True:
            params = {**_event_params(last, chosen), "follow": "true"}
            response = self._stream("GET", "/v1/events", params=params, timeout=timeout)
            where = netloc(str(response.url)) or self.address
            parser = Parser()
            reason = "the manager ended the stream"
            overflowed = False
            try:
                for text in response.iter_text():
                    for message in parser.feed(text):
                        kind, body = message.event, _event_json(message.data, where)
                        if kind == "overflow":
                            overflowed = True
                            reason = "the stream fell behind (overflow)"
                        elif kind != "gap":
                            event_id = body.get("id")
                            if not isinstance(event_id, str):
                                raise WarrenError(f"manager at {where} sent an event without an id")
                            last, kind = event_id, "event"
                        yield kind, body
                    if overflowed:
                        break
            except httpx.HTTPError as exc:
                reason = f"the stream broke off: {describe(exc)}"
            finally:
                response.close()
            if not overflowed and len(self.addresses) > 1:
                self._current = (self._current + 1) % len(self.addresses)
            yield "reconnect", {"manager": where, "reason": reason, "since": last}


# What follow_events yields: ("event", the event object), ("gap", {"after", "before", "message"}) when
# the manager no longer holds some events asked for, ("overflow", {...}) when the manager ended the
# stream because it was read too slowly, ("reconnect", {"manager", "reason"}) before it asks again.
EventItem = tuple[str, JSONObject]
EVENT_FILTERS = ("type", "service", "node", "task")


def _event_params(since: str | None, filters: Mapping[str, Sequence[str]]) -> dict[str, str]:
    params = {key: ",".join(values) for key, values in filters.items() if values}
    if since:
        params["since"] = since
    return params


def _event_json(data: str, where: str) -> JSONObject:
    import orjson

    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError:
        doc = None
    if not isinstance(doc, dict):
        raise WarrenError(f"manager at {where} sent an event that is not a JSON object")
    return doc


def _segment(name: str) -> str:
    return quote(name, safe="")


def _consistent(consistent: bool) -> dict[str, str] | None:
    return {"consistent": "true"} if consistent else None
