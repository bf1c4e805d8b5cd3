"""Pure ASGI middleware: request ids, body limits and read timeouts, metrics, last-resort 500s."""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.errors import BodyTimeout, InternalError, PayloadTooLarge, ServiceError
from app.metrics import Metrics

log = logging.getLogger(__name__)

_CLIENT_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class RequestContextMiddleware:
    """Runs around every HTTP request, outside FastAPI's routing.

    `activity(+1/-1)` is told when a classification request starts and ends (draining).
    `body_limit(path)` gives the most body bytes a path accepts (None: no body expected,
    the smallest limit applies). The limit is enforced while the body streams in, and
    the whole body must arrive within `body_timeout_s`, so neither a huge nor a trickled
    upload can hold memory or a connection.
    """

    def __init__(
        self,
        app: ASGIApp,
        metrics: Metrics,
        activity: Callable[[int], None],
        body_limit: Callable[[str], int],
        body_timeout_s: float,
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.activity = activity
        self.body_limit = body_limit
        self.body_timeout_s = body_timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        headers = dict(scope["headers"])
        given = headers.get(b"x-request-id", b"").decode("latin-1")
        request_id = given if _CLIENT_REQUEST_ID.match(given) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        status = 500
        response_started = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                status, response_started = message["status"], True
                message["headers"] = [
                    *message.get("headers", []),
                    (b"x-request-id", request_id.encode()),
                ]
            await send(message)

        limit = self.body_limit(scope["path"])
        try:
            declared = int(headers.get(b"content-length", b"0"))
        except ValueError:
            declared = 0
        # Only classification work holds a drain open; probes and scrapes do not.
        counted = scope["path"].startswith("/classify")
        if counted:
            self.activity(+1)
        try:
            if declared > limit:
                raise PayloadTooLarge(f"request body is {declared} bytes; the limit is {limit}")
            await self.app(scope, self._limited(receive, limit), send_with_id)
        except ServiceError as exc:  # raised here, or from receive outside a route
            if response_started:
                raise
            self.metrics.errors.labels(exc.code).inc()
            await exc.response(request_id)(scope, receive, send_with_id)
        except Exception:
            log.exception("unhandled error (request id %s)", request_id)
            if response_started:
                raise
            self.metrics.errors.labels(InternalError.code).inc()
            error = InternalError("internal error; quote the request id when reporting it")
            await error.response(request_id)(scope, receive, send_with_id)
        finally:
            if counted:
                self.activity(-1)
            route = scope.get("route")
            path = getattr(route, "path", "unmatched")
            self.metrics.requests.labels(path, scope["method"], str(status)).inc()
            self.metrics.request_seconds.labels(path).observe(time.perf_counter() - started)

    def _limited(self, receive: Receive, limit: int) -> Receive:
        received = 0
        body_done = False
        deadline = time.monotonic() + self.body_timeout_s

        async def receive_limited() -> Message:
            nonlocal received, body_done
            if body_done:  # waiting for a disconnect: no deadline applies
                return await receive()
            try:
                async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                    message = await receive()
            except TimeoutError:
                raise BodyTimeout(
                    f"request body not received within {self.body_timeout_s:g} s"
                ) from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise PayloadTooLarge(f"request body exceeds the limit of {limit} bytes")
                body_done = not message.get("more_body", False)
            return message

        return receive_limited
