"""ManagerClient over httpx.MockTransport: retries, deadlines, error mapping."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from warren.cli.main import main
from warren.client import ManagerClient, base_url
from warren.config import ClientSettings
from warren.errors import (
    ConfigError,
    ConflictError,
    InvalidError,
    NotFoundError,
    UnauthorizedError,
    UnavailableError,
    UnreachableError,
    WarrenError,
)
from warren.pki import certs, userconfig

Handler = Callable[[httpx.Request], httpx.Response]


class FakeTime:
    """A clock that only moves when the client sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def make_client(handler: Handler, time: FakeTime, settings: ClientSettings | None = None) -> ManagerClient:
    return ManagerClient(
        "127.0.0.1:8080",
        settings=settings,
        transport=httpx.MockTransport(handler),
        sleep=time.sleep,
        clock=time.clock,
    )


def error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, json={"error": code, "message": message}, headers=headers)


def test_retries_503_then_succeeds_honouring_retry_after_capped() -> None:
    time, calls = FakeTime(), []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        if len(calls) < 3:
            return error(503, "unavailable", "no leader", {"Retry-After": "5"})
        return httpx.Response(200, json=[{"name": "m1"}])

    with make_client(handler, time) as client:
        assert client.list_nodes() == [{"name": "m1"}]
    assert len(calls) == 3
    # Retry-After: 5 is capped by retry_max_delay_s (1 s).
    assert time.sleeps == [1.0, 1.0]


def test_backoff_doubles_up_to_the_maximum_without_retry_after() -> None:
    time, calls = FakeTime(), []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        if len(calls) <= 5:
            return httpx.Response(503, json={"error": "unavailable", "message": "shutting down"})
        return httpx.Response(200, json={"cluster_id": "c"})

    with make_client(handler, time) as client:
        assert client.cluster_info() == {"cluster_id": "c"}
    assert time.sleeps == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0])


def test_503_until_the_deadline_gives_a_clear_message() -> None:
    time, calls = FakeTime(), []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return error(503, "unavailable", "no leader elected", {"Retry-After": "1"})

    settings = ClientSettings(retry_deadline_s=5.0)
    with make_client(handler, time, settings) as client, pytest.raises(UnavailableError) as caught:
        client.create_service({"name": "web", "image": "nginx"})
    assert str(caught.value) == (
        "no leader (cluster has no quorum?) at 127.0.0.1:8080: no leader elected (retried for 5s)"
    )
    assert time.now <= 5.0
    assert len(calls) == 6  # at 0, 1, 2, 3, 4, 5 s


def test_connection_refused_is_retried_then_reported() -> None:
    time, calls = FakeTime(), []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        raise httpx.ConnectError("[Errno 111] Connection refused", request=request)

    settings = ClientSettings(retry_deadline_s=2.0)
    with make_client(handler, time, settings) as client, pytest.raises(UnavailableError) as caught:
        client.cluster_info()
    assert str(caught.value).startswith("cannot reach manager at 127.0.0.1:8080: connection refused")
    assert len(calls) > 1
    assert time.now <= 2.0


def test_connection_refused_then_success() -> None:
    time, calls = FakeTime(), []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        if len(calls) == 1:
            raise httpx.ConnectError("[Errno 111] Connection refused", request=request)
        return httpx.Response(201, json={"role": "worker", "token": "T", "ttl_s": 60})

    with make_client(handler, time) as client:
        assert client.create_join_token("worker")["token"] == "T"
    assert json.loads(calls[1].content) == {"role": "worker", "rotate": False}


def test_zero_deadline_means_one_attempt() -> None:
    time, calls = FakeTime(), []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        raise httpx.ConnectError("[Errno 111] Connection refused", request=request)

    with make_client(handler, time, ClientSettings(retry_deadline_s=0.0)) as client:
        refused = r"^cannot reach manager at 127.0.0.1:8080: connection refused$"
        with pytest.raises(UnavailableError, match=refused):
            client.list_services()
    assert len(calls) == 1


def test_a_write_that_reached_no_manager_is_unreachable_one_that_did_is_not() -> None:
    """UnreachableError promises nothing was changed: only while no attempt reached a manager (the
    chaos workload counts such a write as certainly not done, any other failure as maybe done)."""
    time, calls = FakeTime(), []

    def refused(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        raise httpx.ConnectError("[Errno 111] Connection refused", request=request)

    with make_client(refused, time, ClientSettings(retry_deadline_s=1.0)) as client:
        with pytest.raises(UnreachableError):
            client.update_service("web", {"replicas": 2}, if_match=3)
    assert len(calls) > 1

    # A first attempt answered 503 (the proposal may be applied yet), later ones refused: not unreachable.
    time, calls = FakeTime(), []

    def busy_then_refused(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        if len(calls) == 1:
            return error(503, "unavailable", "no leader")
        raise httpx.ConnectError("[Errno 111] Connection refused", request=request)

    with make_client(busy_then_refused, time, ClientSettings(retry_deadline_s=1.0)) as client:
        with pytest.raises(UnavailableError) as caught:
            client.update_service("web", {"replicas": 2}, if_match=3)
    assert not isinstance(caught.value, UnreachableError), caught.value
    assert len(calls) > 1


@pytest.mark.parametrize(
    ("status", "code", "exc_type"),
    [
        (400, "invalid", InvalidError),
        (401, "unauthorized", UnauthorizedError),
        (404, "not_found", NotFoundError),
        (409, "conflict", ConflictError),
        (413, "too_large", InvalidError),
        (418, "teapot", WarrenError),
    ],
)
def test_4xx_is_mapped_and_not_retried(status: int, code: str, exc_type: type[WarrenError]) -> None:
    time, calls = FakeTime(), []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return error(status, code, f"the {code} message", {"Retry-After": "1"})

    with make_client(handler, time) as client, pytest.raises(exc_type) as caught:
        client.get_service("web")
    assert str(caught.value) == f"the {code} message"
    assert len(calls) == 1
    assert time.sleeps == []


def test_error_without_our_body_names_the_status() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404, text="<html>nope</html>")

    with make_client(handler, FakeTime()) as client, pytest.raises(NotFoundError) as caught:
        client.get_node("n1")
    assert str(caught.value) == "manager at 127.0.0.1:8080 answered 404 Not Found"


def test_gateway_errors_are_retried_for_reads_only() -> None:
    time, calls = FakeTime(), []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.method)
        return httpx.Response(502)

    settings = ClientSettings(retry_deadline_s=1.0)
    with make_client(handler, time, settings) as client:
        with pytest.raises(WarrenError):
            client.list_nodes()
        reads = len(calls)
        with pytest.raises(WarrenError):
            client.remove_service("web")
    assert reads > 1
    assert calls[reads:] == ["DELETE"]


def test_dropped_connection_on_a_write_is_not_retried() -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        raise httpx.RemoteProtocolError("Server disconnected without sending a response.", request=request)

    with make_client(handler, FakeTime()) as client, pytest.raises(UnavailableError, match="may or may not"):
        client.update_service("web", {"replicas": 2})
    assert len(calls) == 1


def test_read_timeout_is_reported_not_retried() -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        raise httpx.ReadTimeout("timed out", request=request)

    with make_client(handler, FakeTime()) as client, pytest.raises(UnavailableError) as caught:
        client.cluster_info()
    assert str(caught.value) == "manager at 127.0.0.1:8080 did not answer within 10s"
    assert len(calls) == 1


def test_names_are_escaped_in_paths() -> None:
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.raw_path)
        return httpx.Response(200, json={"removed": "a/b"})

    with make_client(handler, FakeTime()) as client:
        client.remove_node("a/b")
    assert seen == [b"/v1/nodes/a%2Fb"]


def test_unexpected_answer_shape() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"not": "a list"})

    with make_client(handler, FakeTime()) as client, pytest.raises(WarrenError, match="unexpected answer"):
        client.list_services()


def test_backup_streams_bytes() -> None:
    import io

    payload = b"SQLite format 3\x00" + bytes(100_000)

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/v1/cluster/backup"
        return httpx.Response(200, content=payload, headers={"Content-Type": "application/vnd.sqlite3"})

    sink = io.BytesIO()
    with make_client(handler, FakeTime()) as client:
        assert client.backup(sink) == len(payload)
    assert sink.getvalue() == payload


@pytest.mark.parametrize(
    ("manager", "url"),
    [
        ("10.0.0.1:8080", "https://10.0.0.1:8080"),
        ("manager-1", "https://manager-1:8080"),
        ("[::1]:9000", "https://[::1]:9000"),
        ("unix:/var/lib/warren/warren.sock", "http://localhost"),
        ("https://lb.example:443/", "https://lb.example:443"),
    ],
)
def test_base_url(manager: str, url: str) -> None:
    assert base_url(manager) == url


def test_bad_manager_address() -> None:
    with pytest.raises(ConfigError, match="--manager"):
        base_url("host:notaport")


def test_main_reports_connection_refused_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    time = FakeTime()

    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[Errno 111] Connection refused", request=request)

    def connect(manager: str) -> ManagerClient:
        assert manager == "10.1.2.3:8080"
        transport = httpx.MockTransport(handler)
        return ManagerClient(manager, transport=transport, sleep=time.sleep, clock=time.clock)

    assert main(["node", "list", "--manager", "10.1.2.3:8080"], connect=connect) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (
        "warren: cannot reach manager at 10.1.2.3:8080: connection refused (retried for 15s)\n"
    )


def test_main_reports_no_quorum(capsys: pytest.CaptureFixture[str]) -> None:
    time = FakeTime()

    def handler(request: httpx.Request) -> httpx.Response:
        return error(503, "unavailable", "no leader known", {"Retry-After": "1"})

    def connect(manager: str) -> ManagerClient:
        transport = httpx.MockTransport(handler)
        return ManagerClient(manager, transport=transport, sleep=time.sleep, clock=time.clock)

    assert main(["service", "scale", "web", "3"], connect=connect) == 1
    assert capsys.readouterr().err == (
        "warren: no leader (cluster has no quorum?) at 127.0.0.1:8080: no leader known (retried for 15s)\n"
    )


def test_several_managers_are_tried_in_turn_before_pausing() -> None:
    time, hosts = FakeTime(), []

    def handler(request: httpx.Request) -> httpx.Response:
        hosts.append(request.url.host)
        if request.url.host == "10.0.0.1":
            raise httpx.ConnectError("connection refused", request=request)
        if request.url.host == "10.0.0.2":
            return error(503, "unavailable", "no leader")
        return httpx.Response(200, json={"ok": True})

    client = ManagerClient(
        "10.0.0.1:8080, 10.0.0.2:8080,10.0.0.3:8080",
        transport=httpx.MockTransport(handler),
        sleep=time.sleep,
        clock=time.clock,
    )
    with client:
        assert client.request("GET", "/v1/cluster") == {"ok": True}
        assert hosts == ["10.0.0.1", "10.0.0.2", "10.0.0.3"]
        assert time.sleeps == []  # a manager that answered was found without waiting
        assert client.address == "10.0.0.3:8080"
        assert client.request("GET", "/v1/cluster") == {"ok": True}
        assert hosts[-1] == "10.0.0.3", "the manager that answered keeps the next request"


def test_several_managers_all_failing_pause_between_rounds() -> None:
    time, hosts = FakeTime(), []

    def handler(request: httpx.Request) -> httpx.Response:
        hosts.append(request.url.host)
        raise httpx.ConnectError("connection refused", request=request)

    settings = ClientSettings(retry_deadline_s=1.0, retry_initial_delay_s=0.25, retry_max_delay_s=1.0)
    client = ManagerClient(
        "10.0.0.1:8080,10.0.0.2:8080",
        settings=settings,
        transport=httpx.MockTransport(handler),
        sleep=time.sleep,
        clock=time.clock,
    )
    with client, pytest.raises(UnavailableError, match="cannot reach manager"):
        client.request("GET", "/v1/cluster")
    assert hosts[:4] == ["10.0.0.1", "10.0.0.2", "10.0.0.1", "10.0.0.2"]
    assert time.sleeps[:2] == [0.25, 0.5]


def test_an_empty_manager_list_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="names no manager"):
        ManagerClient(" , ")


def test_timeout_flag_bounds_the_retries(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # This user has the admin certificate of a cluster (so the CLI goes as far as connecting).
    monkeypatch.setenv("WARREN_CONFIG_DIR", str(tmp_path))
    ca_key, ca_cert = certs.create_ca("cluster-t", 60)
    key = certs.new_key()
    admin = certs.issue(
        ca_key, ca_cert, key.public_key(), name="admin", role="admin", cluster_id="c", lifetime_s=60
    )
    userconfig.save_admin("cluster-t", certs.cert_pem(ca_cert), certs.cert_pem(admin), certs.key_pem(key))
    # Port 1 on loopback refuses at once: with --timeout 0 the CLI tries once and says so.
    assert main(["cluster", "info", "--manager", "127.0.0.1:1", "--timeout", "0s"]) == 1
    err = capsys.readouterr().err
    assert err == "warren: cannot reach manager at 127.0.0.1:1: connection refused\n"


def test_without_an_admin_certificate_the_cli_says_where_to_get_one(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WARREN_CONFIG_DIR", str(tmp_path))
    assert main(["cluster", "info", "--manager", "127.0.0.1:1", "--timeout", "0s"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("warren: no admin certificate for the cluster at 127.0.0.1:1") and "unix:" in err


def test_a_malformed_manager_in_a_list_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["cluster", "info", "--manager", "127.0.0.1:8080,bad:port:x"]) == 2
    assert "is not a host name or IP address" in capsys.readouterr().err


# -- calls added for workers and services ------------------------------------------------------------

def test_new_calls_use_their_paths_and_bodies() -> None:
    seen: list[tuple[str, str, bytes, str | None]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.method, str(request.url), request.content, request.headers.get("If-Match")))
        listing = request.url.path.endswith("/tasks") or request.url.path == "/v1/services"
        return httpx.Response(200, json=[] if listing else {"name": "x"})

    with make_client(handler, FakeTime()) as client:
        assert client.list_tasks("web") == []
        client.rollback_service("web")
        client.set_node_availability("worker-1", "drain")
        client.update_service("web", {"replicas": 2}, if_match=41)
        client.get_service("web", consistent=True)
        client.list_services(consistent=True)
    assert seen == [
        ("GET", "https://127.0.0.1:8080/v1/services/web/tasks", b"", None),
        ("POST", "https://127.0.0.1:8080/v1/services/web/rollback", b"", None),
        ("POST", "https://127.0.0.1:8080/v1/nodes/worker-1/availability", b'{"availability":"drain"}', None),
        ("PATCH", "https://127.0.0.1:8080/v1/services/web", b'{"replicas":2}', "41"),
        ("GET", "https://127.0.0.1:8080/v1/services/web?consistent=true", b"", None),
        ("GET", "https://127.0.0.1:8080/v1/services?consistent=true", b"", None),
    ]


def test_following_logs_has_no_read_timeout() -> None:
    timeouts = []

    def handler(request: httpx.Request) -> httpx.Response:
        timeouts.append(request.extensions["timeout"])
        return httpx.Response(200, text="x\n")

    with make_client(handler, FakeTime()) as client:
        assert "".join(client.service_logs("web", follow=True)) == "x\n"
        assert "".join(client.service_logs("web")) == "x\n"
    assert timeouts[0]["read"] is None and timeouts[0]["connect"] == 10.0
    assert timeouts[1]["read"] == 10.0


def test_opening_a_log_stream_is_retried_like_a_read() -> None:
    time, calls = FakeTime(), []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        if len(calls) < 3:
            return error(503, "unavailable", "no leader")
        return httpx.Response(200, text="hello\n")

    with make_client(handler, time) as client:
        assert list(client.service_logs("web", follow=True, tail=3)) == ["hello\n"]
    assert len(calls) == 3 and time.sleeps == pytest.approx([0.1, 0.2])


def test_a_dead_leader_named_by_a_redirect_sends_the_request_back_to_a_manager() -> None:
    time, hosts = FakeTime(), []

    def handler(request: httpx.Request) -> httpx.Response:
        hosts.append(request.url.host)
        if request.url.host == "127.0.0.1":  # the follower names the leader; a newer one the second time
            leader = "10.0.0.1" if hosts.count("127.0.0.1") == 1 else "10.0.0.3"
            location = f"https://{leader}:8080{request.url.raw_path.decode()}"
            return httpx.Response(307, headers={"Location": location})
        if request.url.host == "10.0.0.1":
            raise httpx.ConnectError("[Errno 111] Connection refused", request=request)
        return httpx.Response(200, text="from the new leader\n")

    with make_client(handler, time) as client:
        assert "".join(client.service_logs("web", follow=True)) == "from the new leader\n"
        assert client.address == "127.0.0.1:8080", "a leader reached by redirect does not become the target"
    assert hosts == ["127.0.0.1", "10.0.0.1", "127.0.0.1", "10.0.0.3"]
    assert time.sleeps == [0.1]


def test_a_redirect_loop_is_an_error() -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(307, headers={"Location": "/v1/services/web/logs?follow=true"})

    with make_client(handler, FakeTime()) as client, pytest.raises(UnavailableError, match="too many times"):
        list(client.service_logs("web", follow=True))
    assert len(calls) == 6


def test_a_redirected_write_keeps_its_body() -> None:
    bodies = []

    def handler(request: httpx.Request) -> httpx.Response:
        bodies.append((request.url.host, request.content))
        if request.url.host == "127.0.0.1":
            return httpx.Response(307, headers={"Location": "https://10.0.0.1:8080/v1/services"})
        return httpx.Response(201, json={"name": "web"})

    with make_client(handler, FakeTime()) as client:
        assert client.create_service({"name": "web", "image": "x"}) == {"name": "web"}
    body = b'{"name":"web","image":"x"}'
    assert bodies == [("127.0.0.1", body), ("10.0.0.1", body)]
