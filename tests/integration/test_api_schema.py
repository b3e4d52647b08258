"""Property-based fuzzing of a running manager's API from its own /openapi.json (schemathesis).

Every operation gets up to MAX_EXAMPLES generated requests that fit the schema and as many that break
it on purpose; the only
check is `not_a_server_error`: whatever a client sends, the manager answers without a 5xx. 503 would
be legitimate on a cluster without a leader, but this single manager always has one, so it counts too.
The backup endpoint is included: it takes no input, so hypothesis generates one or two requests.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from tests.integration.managers import ManagerProc

MAX_EXAMPLES = 25
UVICORN_PROTOCOL_REFUSAL = "Invalid HTTP request received."


@pytest.fixture(scope="module")
def api_schema(lone_manager: ManagerProc) -> schemathesis.BaseSchema:
    # FastAPI writes OpenAPI 3.1, which schemathesis 3.x supports behind a flag.
    schemathesis.experimental.OPEN_API_3_1.enable()
    return schemathesis.from_uri(
        f"http://{lone_manager.api_addr}/openapi.json",
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
def test_no_operation_answers_5xx(case: schemathesis.Case, lone_manager: ManagerProc) -> None:
    response = case.call(timeout=15)
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
