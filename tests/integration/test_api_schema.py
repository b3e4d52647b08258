"""Property-based fuzzing of a running manager's API from its own /openapi.json (schemathesis).

Every operation gets up to MAX_EXAMPLES generated requests that fit the schema and as many that break
it on purpose; the only
check is `not_a_server_error`: whatever a client sends, the manager answers without a 5xx. 503 would
be legitimate on a cluster without a leader, but this single manager always has one, so it counts too.
The backup endpoint is included: it takes no input, so hypothesis generates one or two requests.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import hypothesis_jsonschema._from_schema as jsonschema_strategies
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis.internal.conjecture import utils as conjecture_utils
from schemathesis.checks import not_a_server_error

from tests.integration.managers import ManagerProc, manager_clusters

MAX_EXAMPLES = 25


# hypothesis-jsonschema 0.23.1 (the latest release, used by schemathesis for request bodies) drives
# Hypothesis' private `many` with `while elements.more(): ...`; Hypothesis 6.170 replaced that protocol
# by `with many(...) as elements: for _ in elements:` and dropped `more()`, so every object body fails
# with "'many' object has no attribute 'more'". Give hypothesis-jsonschema alone (not Hypothesis) a
# `many` that speaks the old protocol on top of the new one; a no-op once either side has caught up.
class _ManyWithMore(conjecture_utils.many):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.__enter__()

    def more(self) -> bool:
        self._finish_element()
        if self._done or self._closed:
            return False
        if not self._decide():
            self._closed = True
            return False
        self.count += 1
        self._in_element = True
        self._rejected = False
        return True


class _ConjectureUtils(ModuleType):
    many = _ManyWithMore

    def __getattr__(self, name: str) -> Any:
        return getattr(conjecture_utils, name)


if (
    not hasattr(conjecture_utils.many, "more")
    and getattr(jsonschema_strategies, "cu", None) is conjecture_utils
):
    setattr(jsonschema_strategies, "cu", _ConjectureUtils(conjecture_utils.__name__))  # noqa: B010


@pytest.fixture(scope="module")
def fuzzed_manager(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[ManagerProc]:
    with manager_clusters(Path(tmp_path_factory.mktemp("schema")), request) as make:
        yield make().init()


@pytest.fixture(scope="module")
def api_schema(fuzzed_manager: ManagerProc) -> schemathesis.BaseSchema:
    # FastAPI writes OpenAPI 3.1, which schemathesis 3.x supports behind a flag.
    schemathesis.experimental.OPEN_API_3_1.enable()
    return schemathesis.from_uri(
        f"http://{fuzzed_manager.api_addr}/openapi.json",
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
def test_no_operation_answers_5xx(case: schemathesis.Case, fuzzed_manager: ManagerProc) -> None:
    response = case.call(timeout=15)
    case.validate_response(response, checks=(not_a_server_error,))


def test_manager_survived_the_fuzzing(fuzzed_manager: ManagerProc) -> None:
    assert fuzzed_manager.alive
    requests = {
        k: v for k, v in fuzzed_manager.metrics().items() if k.startswith("warren_api_requests_total")
    }
    print("\n".join(f"{k} {v:g}" for k, v in sorted(requests.items())))
    # The fuzzing really ran: many requests, some with JSON bodies valid enough to create something.
    assert sum(requests.values()) >= 100, requests
    assert any('code="201"' in k for k in requests), requests
    text = fuzzed_manager.errors()
    assert "Traceback" not in text and " ERROR " not in text, fuzzed_manager.log_tail()
