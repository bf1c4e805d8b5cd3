"""ServiceError -> HTTP, in one place: the JSON error body, its headers, and the count.

Two shapes: the dataplane's own `{"error": {"code", "message", "request_id"}}`, and under
/v2 the Open Inference Protocol's `{"error": "<message>"}` (KServe's v2 protocol, "HTTP/REST
... Errors"), which Triton's and KServe's clients parse; there the stable code leads the
message, and an invalid parameter is a 400 (the protocol's invalid-argument status).
"""

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


def speaks_v2(path: str) -> bool:
    """Whether `path` belongs to the Open Inference Protocol's routes."""
    return path == "/v2" or path.startswith("/v2/")


def count(metrics: Metrics, error: ServiceError) -> None:
    """Count an error a client is answered with (a response, or an item of a batch)."""
    metrics.errors.labels(error.code).inc()


def render(
    metrics: Metrics, error: ServiceError, request_id: str | None, path: str = ""
) -> JSONResponse:
    """The response for `error`, counted, in the shape of the protocol `path` speaks."""
    count(metrics, error)
    if speaks_v2(path):
        return JSONResponse(
            {"error": f"{error.code}: {error.message}"},
            status_code=400 if error.status == 422 else error.status,
            headers=error.headers(),
        )
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
        return render(metrics, exc, request_id(request), request.url.path)

    async def validation_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'][1:]) or e['loc'][0]}: {e['msg']}"
            for e in exc.errors()
        )
        error = InvalidParameter(problems or "invalid request")
        return render(metrics, error, request_id(request), request.url.path)

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, HTTPException)
        mapped = {404: NotFound, 405: MethodNotAllowed}.get(exc.status_code, MalformedRequest)
        return render(metrics, mapped(str(exc.detail)), request_id(request), request.url.path)

    app.add_exception_handler(ServiceError, service_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(HTTPException, http_error)
