"""ServiceError -> gRPC status, in one place: the code, the message (the stable error code
first, as the REST fronts put it), and the trailing metadata."""

from __future__ import annotations

import grpc

from app.errors import ServiceError

_CODES = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    403: grpc.StatusCode.PERMISSION_DENIED,
    404: grpc.StatusCode.NOT_FOUND,
    405: grpc.StatusCode.UNIMPLEMENTED,
    408: grpc.StatusCode.DEADLINE_EXCEEDED,
    409: grpc.StatusCode.FAILED_PRECONDITION,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    415: grpc.StatusCode.INVALID_ARGUMENT,
    422: grpc.StatusCode.INVALID_ARGUMENT,
    499: grpc.StatusCode.CANCELLED,
    501: grpc.StatusCode.UNIMPLEMENTED,
    503: grpc.StatusCode.UNAVAILABLE,
    504: grpc.StatusCode.DEADLINE_EXCEEDED,
}
Metadata = tuple[tuple[str, str], ...]


def code_of(error: ServiceError) -> grpc.StatusCode:
    return _CODES.get(error.status, grpc.StatusCode.INTERNAL)


def details_of(error: ServiceError) -> str:
    return f"{error.code}: {error.message}"


def trailers_of(error: ServiceError, request_id: str) -> Metadata:
    """The request id; for a retryable error the advice to wait, both as `retry-after`
    (seconds, as the REST fronts' header) and as gRPC's own `grpc-retry-pushback-ms`, which
    a client with a retry policy obeys."""
    metadata: Metadata = (("x-request-id", request_id),)
    if error.retry_after_s:
        metadata += (
            ("retry-after", str(error.retry_after_s)),
            ("grpc-retry-pushback-ms", str(error.retry_after_s * 1000)),
        )
    return metadata
