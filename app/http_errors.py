"""ServiceError -> HTTP, in one place: the JSON error body, its headers, and the count."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from app.errors import InvalidParameter, MalformedRequest, MethodNotAllowed, NotFound, ServiceError
from app.metrics import Metrics

log = logging.getLogger(__name__)


def error_body(error: ServiceError, request_id: str | None = None) -> dict[str, object]:
    body: dict[str, object] = {"code": error.code, "message": error.message}
    if request_id:
        body["request_id"] = request_id
    return body


def render(metrics: Metrics, error: ServiceError, request_id: str | None) -> JSONResponse:
    """The response for `error`, counted."""
    metrics.errors.labels(error.code).inc()
    return JSONResponse(
        {"error": error_body(error, request_id)},
        status_code=error.status,
        headers=error.headers(),
    )


def request_id(request: Request) -> str | None:
    """The id the middleware gave this request (echoed in responses and logs)."""
    value = request.scope.get("state", {}).get("request_id")
    return value if isinstance(value, str) else None


def install(app: FastAPI, metrics: Metrics) -> None:
    """Route every error FastAPI or a route raises through `render`."""

    async def service_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ServiceError)
        return render(metrics, exc, request_id(request))

    async def validation_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'][1:]) or e['loc'][0]}: {e['msg']}"
            for e in exc.errors()
        )
        error = InvalidParameter(problems or "invalid request")
        return render(metrics, error, request_id(request))

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, HTTPException)
        mapped = {404: NotFound, 405: MethodNotAllowed}.get(exc.status_code, MalformedRequest)
        return render(metrics, mapped(str(exc.detail)), request_id(request))

    app.add_exception_handler(ServiceError, service_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(HTTPException, http_error)
