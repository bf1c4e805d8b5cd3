"""The gRPC server: a `grpc.aio` server in the running event loop, on DENSENET_GRPC_PORT.

gRPC receives a whole message before a handler sees it, so what calls being received can
hold is bounded by two settings: DENSENET_GRPC_MAX_CONCURRENT_RPCS calls at once (beyond,
gRPC answers RESOURCE_EXHAUSTED) times DENSENET_GRPC_MAX_MESSAGE_BYTES a message (capped
at the v2 body limit; beyond, RESOURCE_EXHAUSTED too). A received message is then held in
the upload budget with the HTTP bodies until it is answered (app/web/grpc/service.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.message import DecodeError

from app.config import Settings
from app.dataplane import DataPlane
from app.errors import MalformedRequest
from app.web.grpc.health import Health
from app.web.grpc.service import Calls, Context, InferenceService
from app.web.grpc.stubs import grpc_service_pb2_grpc, health_pb2_grpc

log = logging.getLogger("app")


def max_message_bytes(settings: Settings) -> int:
    """The largest message a call may send (see the module docstring)."""
    return min(settings.max_v2_body_bytes, settings.grpc_max_message_bytes)


class _Unparsable:
    """What a request that is not a valid message deserializes to: answered
    INVALID_ARGUMENT by its handler (gRPC itself would answer UNKNOWN and log a traceback)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason


def _lenient(deserialize: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    def parse(data: bytes) -> Any:
        try:
            return deserialize(data)
        except DecodeError as exc:
            return _Unparsable(str(exc))

    return parse


def _guarded(method: str, calls: Calls, behaviour: Callable[..., Any]) -> Callable[..., Any]:
    async def handle(request: Any, context: Context) -> Any:
        if isinstance(request, _Unparsable):
            error = MalformedRequest(
                f"the {method} request is not a valid message: {request.reason}"
            )
            return await calls.refuse(method, context, error)
        return await behaviour(request, context)

    return handle


class _Registrations:
    """Stands in for the server while a generated `add_*_to_server` lists its handlers."""

    def __init__(self) -> None:
        # grpc's handlers are namedtuples at run time (types-grpcio declares a class).
        self.handlers: dict[str, Any] = {}
        self.service = ""

    def add_generic_rpc_handlers(self, handlers: object) -> None:
        pass

    def add_registered_method_handlers(self, service: str, handlers: dict[str, Any]) -> None:
        self.service, self.handlers = service, handlers


def _register(server: grpc.aio.Server, add: Callable[..., None], servicer: Any) -> None:
    """Register `servicer` as the generated `add` would, but with requests that do not
    parse answered INVALID_ARGUMENT by the servicer's own error handling."""
    listed = _Registrations()
    add(servicer, listed)
    handlers = {}
    for method, handler in listed.handlers.items():
        kind = "unary_unary" if handler.unary_unary else "stream_stream"
        behaviour = getattr(handler, kind)
        handlers[method] = handler._replace(
            request_deserializer=_lenient(handler.request_deserializer),
            **{kind: _guarded(method, servicer.calls, behaviour)},
        )
    generic = grpc.method_handlers_generic_handler(listed.service, handlers)
    server.add_generic_rpc_handlers((generic,))
    server.add_registered_method_handlers(listed.service, handlers)


def address(settings: Settings) -> str:
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    return f"{host}:{settings.grpc_port}"


@dataclass
class GrpcFront:
    server: grpc.aio.Server
    address: str

    async def stop(self, grace_s: float) -> None:
        """Refuse new calls; calls in progress get `grace_s` to finish."""
        await self.server.stop(grace_s)


async def start(dataplane: DataPlane) -> GrpcFront:
    """Listen and serve; raises OSError when the port cannot be had."""
    settings = dataplane.settings
    message_bytes = max_message_bytes(settings)
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", message_bytes),
            # gRPC shares a port between processes by default (SO_REUSEPORT): a second
            # server, or a stale one, would silently take half the calls. Refuse instead.
            ("grpc.so_reuseport", 0),
        ],
        maximum_concurrent_rpcs=settings.grpc_max_concurrent_rpcs,
    )
    inference_service, health = InferenceService(dataplane), Health(dataplane)
    # The generated functions carry no annotations.
    add_inference = grpc_service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server
    add_health = health_pb2_grpc.add_HealthServicer_to_server
    for add, servicer in ((add_inference, inference_service), (add_health, health)):
        _register(server, add, servicer)
    where = address(settings)
    try:
        server.add_insecure_port(where)
    except RuntimeError as exc:  # grpc's way of saying the port is taken or invalid
        raise OSError(f"cannot listen for gRPC on {where}: {exc}") from None
    await server.start()
    log.info(
        "gRPC on %s: messages up to %.1f MiB, %d calls at once",
        where,
        message_bytes / 2**20,
        settings.grpc_max_concurrent_rpcs,
    )
    return GrpcFront(server, where)
