"""Fuzz every operation of the app's own OpenAPI schema (schemathesis) against a real server.

Bounded: a fixed number of derandomized examples per operation, so the run is repeatable
and takes seconds. Each answer must be no 5xx and conform to the schema: a documented
status, content type, headers and body shape.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests import hostile
from tests.server import running

pytestmark = pytest.mark.slow
EXAMPLES_PER_OPERATION = 40
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


@pytest.fixture(scope="module")
def server_url(tiny_model: Path) -> Iterator[str]:
    with running(tiny_model, **hostile.SETTINGS) as (_, url):
        yield url


def operations(url: str) -> list[schemathesis.APIOperation]:
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    return [result.ok() for result in schema.get_all_operations()]


ENDPOINTS = [
    "POST /classify",
    "POST /classify/batch",
    "GET /health/live",
    "GET /health/ready",
    "GET /metrics",
    "GET /model",
    "GET /models",
    "GET /models/{name}",
    "GET /models/{name}/versions/{version}",
    "GET /v2",
    "GET /v2/health/live",
    "GET /v2/health/ready",
    "GET /v2/models/{name}",
    "GET /v2/models/{name}/versions/{version}",
    "GET /v2/models/{name}/ready",
    "GET /v2/models/{name}/versions/{version}/ready",
    "GET /v2/models/{name}/config",
    "GET /v2/models/{name}/versions/{version}/config",
    "GET /v2/models/stats",
    "GET /v2/models/{name}/stats",
    "GET /v2/models/{name}/versions/{version}/stats",
    "POST /v2/models/{name}/infer",
    "POST /v2/models/{name}/versions/{version}/infer",
    "POST /v2/repository/index",
    "POST /v2/repository/models/{name}/load",
    "POST /v2/repository/models/{name}/unload",
]


def test_schema_lists_every_endpoint(server_url: str) -> None:
    labels = {f"{op.method.upper()} {op.path}" for op in operations(server_url)}
    assert labels == set(ENDPOINTS)


@pytest.mark.parametrize("label", ENDPOINTS)
def test_fuzzed_requests_get_documented_answers(server_url: str, label: str) -> None:
    [operation] = [op for op in operations(server_url) if f"{op.method.upper()} {op.path}" == label]
    statuses: list[int] = []

    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy())
    def fuzz(case: schemathesis.Case) -> None:
        response = case.call(base_url=server_url, timeout=30)
        statuses.append(response.status_code)
        case.validate_response(response, checks=CHECKS)

    fuzz()
    assert statuses
    assert all(status < 500 for status in statuses)
