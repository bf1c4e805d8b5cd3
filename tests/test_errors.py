"""Domain errors: stable codes and statuses, retry hints, and one rendering."""

from __future__ import annotations

import json
from pathlib import Path

from app import errors
from app.metrics import Metrics
from app.web.errors import render

ALL = [
    cls
    for cls in vars(errors).values()
    if isinstance(cls, type)
    and issubclass(cls, errors.ServiceError)
    and cls is not errors.ServiceError
]


def test_codes_are_unique_and_statuses_are_http_errors() -> None:
    codes = [cls.code for cls in ALL]
    assert len(codes) == len(set(codes))
    assert all(400 <= cls.status < 600 for cls in ALL)


def test_every_503_says_when_to_retry() -> None:
    for cls in ALL:
        if cls.status == 503:
            assert int(cls("x").headers()["Retry-After"]) >= 1, cls.__name__


def test_errors_render_once_with_code_message_and_request_id() -> None:
    metrics = Metrics()
    response = render(metrics, errors.Overloaded("queue full"), "req-1")
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    body = json.loads(bytes(response.body))
    assert body == {"error": {"code": "overloaded", "message": "queue full", "request_id": "req-1"}}
    sample = metrics.registry.get_sample_value("classifier_errors_total", {"code": "overloaded"})
    assert sample == 1.0


def test_unauthorized_asks_for_a_bearer_token() -> None:
    assert errors.Unauthorized("no").headers() == {"WWW-Authenticate": "Bearer"}


def test_errors_module_knows_no_web_framework() -> None:
    source = Path(errors.__file__).read_text()
    assert "fastapi" not in source
    assert "starlette" not in source
