"""Plain domain exceptions, each with a stable `code`, an HTTP-like `status` and a message.

Nothing here knows HTTP frameworks: the web layer renders these (app/web/errors.py), once.
"""

from __future__ import annotations

from typing import ClassVar


class ServiceError(Exception):
    """An error with a stable `code` clients can branch on and a human `message`."""

    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"
    retry_after_s: ClassVar[int | None] = None

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after_s)} if self.retry_after_s else {}


class InvalidImage(ServiceError):
    status, code = 400, "invalid_image"


class MissingFile(ServiceError):
    status, code = 400, "missing_file"


class MalformedRequest(ServiceError):
    status, code = 400, "malformed_request"


class Unauthorized(ServiceError):
    status, code = 401, "unauthorized"

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": "Bearer"}


class Forbidden(ServiceError):
    status, code = 403, "forbidden"


class NotFound(ServiceError):
    status, code = 404, "not_found"


class ModelNotFound(ServiceError):
    status, code = 404, "model_not_found"


class MethodNotAllowed(ServiceError):
    status, code = 405, "method_not_allowed"


class ModelControlDisabled(ServiceError):
    """Loading and unloading by request is off in this control mode."""

    status, code = 409, "model_control_disabled"


class ModelLoadFailed(ServiceError):
    """A model the client asked to load cannot be served (what served before goes on)."""

    status, code = 409, "model_load_failed"


class BodyTimeout(ServiceError):
    status, code = 408, "body_timeout"


class PayloadTooLarge(ServiceError):
    status, code = 413, "payload_too_large"


class ImageTooLarge(ServiceError):
    status, code = 413, "image_too_large"


class UnsupportedMediaType(ServiceError):
    status, code = 415, "unsupported_media_type"


class InvalidParameter(ServiceError):
    status, code = 422, "invalid_parameter"


class NonFiniteOutput(ServiceError):
    """The model computed NaN or infinity for this input: no answer can be encoded
    faithfully (JSON has no NaN), and a score that is not a number answers nothing."""

    status, code = 422, "non_finite_output"


class ClientDisconnected(ServiceError):
    """Recorded, never seen: the client went away before its answer was ready."""

    status, code = 499, "client_disconnected"


class Overloaded(ServiceError):
    status, code, retry_after_s = 503, "overloaded", 1


class UploadStorageFull(ServiceError):
    """The disk (tmpfs) that multipart uploads spool to is full: a server-side condition
    that clears as other uploads finish, so it is a retryable 503, not a 500."""

    status, code, retry_after_s = 503, "upload_storage_full", 2


class NotReady(ServiceError):
    status, code, retry_after_s = 503, "not_ready", 2


class ShuttingDown(ServiceError):
    status, code, retry_after_s = 503, "shutting_down", 5


class Timeout(ServiceError):
    status, code = 504, "timeout"


class NotOffered(ServiceError):
    """A call of a protocol this server does not offer (gRPC streaming, shared memory)."""

    status, code = 501, "not_offered"


class InferenceFailed(ServiceError):
    status, code = 500, "inference_failed"


class InternalError(ServiceError):
    status, code = 500, "internal_error"


class ModelLoadError(Exception):
    """A model cannot be served; start-up stops with this one-line message."""
