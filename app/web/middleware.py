"""Pure ASGI middleware: request ids, request bodies (limits, deadline, upload budget),
HTTP metrics, and last-resort 500s.

A route declares the body it accepts with `declare_body_limit`; routes that do not take
a body get a small default. The limit is checked against Content-Length before the first
byte is read and again while the body streams in, the whole body must arrive within the
body timeout, and all bodies being received together stay within the upload budget. An
error sent before the body was read to its end closes the connection.

The budget counts bytes as they arrive, whatever the headers say: a declared
Content-Length only refuses early a body that could not fit now. So a chunked body cannot
slip past it, and a client that announces a large body and sends nothing holds nothing.

Before a client error (4xx, not 408 or 413) that comes while the client is still sending
its body, the rest of the body is read and dropped (up to the route's limit, within the body
deadline, held nowhere): closing a socket with unread data resets the connection, and a
client still writing would lose the answer with it and see only "connection reset".
A request with both Content-Length and Transfer-Encoding is refused (RFC 9112 section
6.1): the two framings disagree about where the body ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.budget import UploadBudget
from app.draining import Drain
from app.errors import (
    BodyTimeout,
    InternalError,
    MalformedRequest,
    PayloadTooLarge,
    ServiceError,
    ShuttingDown,
)
from app.metrics import Metrics
from app.web.errors import render
from app.web.request_ids import request_id_from

log = logging.getLogger(__name__)

_METHODS = frozenset({"GET", "POST", "HEAD", "OPTIONS"})
DEFAULT_BODY_LIMIT = 64 * 1024


def declare_body_limit(request: Request, limit: int) -> None:
    """Let this request's body be up to `limit` bytes (call before reading it)."""
    request.scope.setdefault("state", {})["body_limit"] = limit


class _Body:
    """One request's body as it streams in: limit, deadline, reservation."""

    def __init__(
        self, scope: Scope, receive: Receive, middleware: RequestContextMiddleware
    ) -> None:
        self.scope, self._receive, self._owner = scope, receive, middleware
        self.reserved = 0  # bytes of this body received so far, held in the budget
        self.done = False
        self.started = False
        self.deadline = time.monotonic() + middleware.body_timeout_s
        headers = dict(scope["headers"])
        self.chunked = b"transfer-encoding" in headers
        self.declared: int | None = None
        if not self.chunked:
            with contextlib.suppress(KeyError, ValueError):
                self.declared = int(headers[b"content-length"])
        self.framing_conflict = self.chunked and b"content-length" in headers
        self.expected = self.declared not in (None, 0) or self.chunked

    @property
    def unread(self) -> bool:
        """A body was announced and not read to its end: the connection cannot be reused."""
        return self.expected and not self.done

    def _start(self) -> None:
        """On the first read, when the route has declared its limit: check what was declared."""
        self.started = True
        limit = self.scope.get("state", {}).get("body_limit", DEFAULT_BODY_LIMIT)
        self.limit = int(limit)
        if self.declared is not None and self.declared > self.limit:
            raise PayloadTooLarge(
                f"request body is {self.declared} bytes; the limit is {self.limit}"
            )
        if self.declared:
            self._owner.budget.check_room(self.declared)

    async def drain(self, limit: int) -> None:
        """Read and drop the rest of the body (at most `limit` bytes in all, within the body
        deadline), so that an early answer reaches a client still sending."""
        if self.declared is not None and self.declared > limit:
            return
        received = self.reserved
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(0.0, self.deadline - time.monotonic())):
                while not self.done and received <= limit:
                    message = await self._receive()
                    if message["type"] != "http.request":
                        return
                    received += len(message.get("body", b""))
                    self.done = not message.get("more_body", False)

    async def receive(self) -> Message:
        if self.done:  # waiting for a disconnect: no deadline applies
            return await self._receive()
        if not self.started:
            self._start()
        try:
            async with asyncio.timeout(max(0.0, self.deadline - time.monotonic())):
                message = await self._receive()
        except TimeoutError:
            timeout = self._owner.body_timeout_s
            raise BodyTimeout(f"request body not received within {timeout:g} s") from None
        if message["type"] == "http.request":
            size = len(message.get("body", b""))
            if self.reserved + size > self.limit:
                raise PayloadTooLarge(f"request body exceeds the limit of {self.limit} bytes")
            self._owner.budget.take(size)
            self.reserved += size
            self.done = not message.get("more_body", False)
        return message


class RequestContextMiddleware:
    """Runs around every HTTP request, outside FastAPI's routing."""

    def __init__(
        self,
        app: ASGIApp,
        metrics: Metrics,
        drain: Drain,
        body_timeout_s: float,
        budget: UploadBudget,
        linger_bytes: int = DEFAULT_BODY_LIMIT,
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.drain = drain
        self.body_timeout_s = body_timeout_s
        self.budget = budget
        # The most of a body read and dropped before a client error, where the route has
        # declared no limit yet (it refused before reading: wrong model, key, parameter).
        self.linger_bytes = linger_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        given = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        request_id = request_id_from(given)
        scope.setdefault("state", {})["request_id"] = request_id
        status = 500
        response_started = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                status, response_started = message["status"], True
                if body.unread and 400 <= status < 500 and status not in (408, 413):
                    limit = scope.get("state", {}).get("body_limit", self.linger_bytes)
                    await body.drain(int(limit))
                extra = [(b"x-request-id", request_id.encode())]
                if body.unread:  # an early answer (413, 408, 401...): close after it
                    extra.append((b"connection", b"close"))
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        body = _Body(scope, receive, self)

        async def fail(error: ServiceError) -> None:
            response = render(self.metrics, error, request_id, scope.get("path", ""))
            await response(scope, receive, send_with_id)

        try:
            if body.framing_conflict:
                raise MalformedRequest(
                    "send Content-Length or Transfer-Encoding, not both (RFC 9112 section 6.1)"
                )
            await self.app(scope, body.receive, send_with_id)
        except ServiceError as exc:  # raised here, or from receive outside a route
            if response_started:
                raise
            await fail(exc)
        except asyncio.CancelledError:
            # A forced stop (second Ctrl-C) cancels what is left: answer it, no traceback.
            if response_started or not self.drain.aborted.is_set():
                raise
            await fail(ShuttingDown("the dataplane was stopped before this request finished"))
        except Exception:
            log.exception("unhandled error (request id %s)", request_id)
            if response_started:
                raise
            await fail(InternalError("internal error; quote the request id when reporting it"))
        finally:
            self.budget.release(body.reserved)
            route = getattr(scope.get("route"), "path", "unmatched")
            method = scope["method"] if scope["method"] in _METHODS else "other"
            self.metrics.requests.labels(route, method, str(status)).inc()
            self.metrics.request_seconds.labels(route).observe(time.perf_counter() - started)
