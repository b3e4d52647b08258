"""Property-based fuzzing of a running manager's API from its own /openapi.json (schemathesis).

Every operation gets up to MAX_EXAMPLES generated requests that fit the schema and as many that break
it on purpose; the only
check is `not_a_server_error`: whatever a client sends, the manager answers without a 5xx. 503 would
be legitimate on a cluster without a leader, but this single manager always has one, so it counts too.
The backup endpoint is included: it takes no input, so hypothesis generates one or two requests.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from tests.integration.managers import ManagerProc, api, credentials

MAX_EXAMPLES = 25
UVICORN_PROTOCOL_REFUSAL = "Invalid HTTP request received."


class _AdminAdapter(requests.adapters.HTTPAdapter):
    """HTTPS with the cluster's admin certificate, verifying the manager as `warren-manager`."""

    def __init__(self, addr: str) -> None:
        self._context = credentials(addr).context()
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["ssl_context"] = self._context
        super().init_poolmanager(*args, **kwargs)


@pytest.fixture(scope="module")
def admin_session(lone_manager: ManagerProc) -> Iterator[requests.Session]:
    session = requests.Session()
    session.mount("https://", _AdminAdapter(lone_manager.api_addr))
    session.verify = credentials(lone_manager.api_addr).dir + "/ca.crt"
    yield session
    session.close()


@pytest.fixture(scope="module")
def api_schema(lone_manager: ManagerProc) -> schemathesis.BaseSchema:
    # FastAPI writes OpenAPI 3.1, which schemathesis 3.x supports behind a flag.
    schemathesis.experimental.OPEN_API_3_1.enable()
    with api(lone_manager.api_addr) as client:
        document = client.get("/openapi.json").raise_for_status().json()
    return schemathesis.from_dict(
        document,
        base_url=f"https://{lone_manager.api_addr}",
        # Requests that fit the schema and requests that break it on purpose (wrong types, missing fields).
        data_generation_methods=schemathesis.DataGenerationMethod.all(),
    )


schema = schemathesis.from_pytest_fixture("api_schema")


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
        HealthCheck.function_scoped_fixture,
    ],
)
def test_no_operation_answers_5xx(
    case: schemathesis.Case, lone_manager: ManagerProc, admin_session: requests.Session
) -> None:
    response = case.call(session=admin_session, timeout=15, stream=True)
    if response.headers.get("content-type", "").startswith("text/event-stream"):
        # A followed event stream never ends: its head is what can be checked.
        response.close()
        case.validate_response(response, checks=(not_a_server_error, status_code_conformance))
        return
    if response.status_code == 400 and response.text == UVICORN_PROTOCOL_REFUSAL:
        # Refused by the HTTP server before any application code (e.g. a header name httptools
        # rejects): plain text by uvicorn's choice, and rightly not a 5xx.
        case.validate_response(response, checks=(not_a_server_error,))
        return
    # No 5xx, and every answer is one the schema documents: its status code, content type and body.
    case.validate_response(
        response,
        checks=(
            not_a_server_error,
            status_code_conformance,
            content_type_conformance,
            response_schema_conformance,
        ),
    )


def test_manager_survived_the_fuzzing(lone_manager: ManagerProc) -> None:
    assert lone_manager.alive
    requests = {
        k: v for k, v in lone_manager.metrics().items() if k.startswith("warren_api_requests_total")
    }
    print("\n".join(f"{k} {v:g}" for k, v in sorted(requests.items())))
    # The fuzzing really ran: many requests, some with JSON bodies valid enough to create something.
    assert sum(requests.values()) >= 100, requests
    assert any('code="201"' in k for k in requests), requests
    text = lone_manager.errors()
    assert "Traceback" not in text and " ERROR " not in text, lone_manager.log_tail()
