"""`inference.GRPCInferenceService`: parse -> data plane -> message.

Every call goes through `Calls.handle`: the request id (`x-request-id` metadata, or a
fresh one; sent back in the trailing metadata), the API key where the REST front asks for
it (`authorization: Bearer <key>` metadata), the metrics, and errors as gRPC status codes
with the stable error code leading the message (app/web/grpc/status.py). Calls this server
does not offer answer UNIMPLEMENTED with why.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from enum import Enum
from typing import Any, TypeVar

import grpc

from app.dataplane import DataPlane, inference
from app.dataplane.oip import InferenceResponse
from app.errors import InternalError, MalformedRequest, NotOffered, ServiceError
from app.web.auth import check_bearer
from app.web.errors import count
from app.web.grpc import decode, encode
from app.web.grpc.status import code_of, details_of, trailers_of
from app.web.grpc.stubs import grpc_service_pb2 as pb
from app.web.grpc.stubs import grpc_service_pb2_grpc as pb_grpc
from app.web.request_ids import request_id_from

log = logging.getLogger(__name__)
R = TypeVar("R")
Context = grpc.aio.ServicerContext[Any, Any]
SERVICE_NAME = "inference.GRPCInferenceService"


class Key(Enum):
    NONE = "none"  # health and readiness: never asks for the key
    OPS = "ops"  # metadata, configuration, statistics: when protect_ops_endpoints is set
    API = "api"  # inference: whenever a key is set


class Calls:
    """What every gRPC call shares (see the module docstring)."""

    def __init__(self, dataplane: DataPlane) -> None:
        self.dataplane = dataplane

    def _authorize(self, key: Key, metadata: dict[str, str]) -> None:
        settings = self.dataplane.settings
        if key is Key.API or (key is Key.OPS and settings.protect_ops_endpoints):
            check_bearer(settings.api_key, metadata.get("authorization"))

    async def handle(
        self, method: str, context: Context, key: Key, work: Callable[[str], Awaitable[R]]
    ) -> R:
        started = time.perf_counter()
        metadata = {k: v for k, v in context.invocation_metadata() or () if isinstance(v, str)}
        request_id = request_id_from(metadata.get("x-request-id"))
        code, failure = grpc.StatusCode.OK, None
        try:
            self._authorize(key, metadata)
            result = await work(request_id)
            context.set_trailing_metadata((("x-request-id", request_id),))
            return result
        except ServiceError as error:
            failure = error
        except asyncio.CancelledError:  # the client went away, or its deadline passed
            code = grpc.StatusCode.CANCELLED
            raise
        except Exception:
            log.exception("unhandled error in %s (request id %s)", method, request_id)
            failure = InternalError("internal error; quote the request id when reporting it")
        finally:
            metrics = self.dataplane.metrics
            code = code_of(failure) if failure else code
            metrics.grpc_requests.labels(method, code.name).inc()
            metrics.grpc_request_seconds.labels(method).observe(time.perf_counter() - started)
        count(self.dataplane.metrics, failure)
        await context.abort(code, details_of(failure), trailers_of(failure, request_id))
        raise AssertionError("unreachable: abort raises")  # pragma: no cover

    async def refuse(self, method: str, context: Context, error: ServiceError) -> Any:
        """Answer `error` as a call of `method` that failed."""

        async def work(_: str) -> Any:
            raise error

        return await self.handle(method, context, Key.NONE, work)


def _client_gone(context: Context) -> asyncio.Future[None]:
    """Completes when the call ends before it was answered (cancelled by the client)."""
    gone: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def done(_: Any) -> None:
        if not gone.done():
            gone.set_result(None)

    context.add_done_callback(done)  # type: ignore[arg-type]  # (types-grpcio declares a class)
    return gone


def _deadline_s(context: Context, own_timeout_s: float | None) -> float | None:
    """The sooner of the call's deadline and the request's `timeout` parameter."""
    deadlines = [d for d in (context.time_remaining(), own_timeout_s) if d is not None]
    return min(deadlines, default=None)


# Calls of Triton's service that this server does not offer, and why.
NOT_OFFERED = {
    "ModelStreamInfer": "streaming inference is not offered; call ModelInfer",
    "SystemSharedMemoryStatus": "shared memory is not offered; send tensors in the message",
    "SystemSharedMemoryRegister": "shared memory is not offered; send tensors in the message",
    "SystemSharedMemoryUnregister": "shared memory is not offered; send tensors in the message",
    "CudaSharedMemoryStatus": "CUDA shared memory is not offered; send tensors in the message",
    "CudaSharedMemoryRegister": "CUDA shared memory is not offered; send tensors in the message",
    "CudaSharedMemoryUnregister": "CUDA shared memory is not offered; send tensors in the message",
    "TraceSetting": "trace settings are not offered; logs carry each request's id",
    "LogSettings": "log settings are set by DENSENET_LOG_LEVEL and DENSENET_LOG_FORMAT",
}


class InferenceService(pb_grpc.GRPCInferenceServiceServicer):
    def __init__(self, dataplane: DataPlane) -> None:
        self.dataplane = dataplane
        self.calls = Calls(dataplane)

    async def ServerLive(self, request: Any, context: Context) -> pb.ServerLiveResponse:
        async def work(_: str) -> pb.ServerLiveResponse:
            return pb.ServerLiveResponse(live=True)

        return await self.calls.handle("ServerLive", context, Key.NONE, work)

    async def ServerReady(self, request: Any, context: Context) -> pb.ServerReadyResponse:
        async def work(_: str) -> pb.ServerReadyResponse:
            return pb.ServerReadyResponse(ready=self.dataplane.ready)

        return await self.calls.handle("ServerReady", context, Key.NONE, work)

    async def ModelReady(
        self, request: pb.ModelReadyRequest, context: Context
    ) -> pb.ModelReadyResponse:
        """Ready false, as Triton answers, for a model that is unknown, loading or draining."""

        async def work(_: str) -> pb.ModelReadyResponse:
            try:
                self.dataplane.admit(request.name or None, request.version or None)
            except ServiceError:
                return pb.ModelReadyResponse(ready=False)
            return pb.ModelReadyResponse(ready=True)

        return await self.calls.handle("ModelReady", context, Key.NONE, work)

    async def ServerMetadata(self, request: Any, context: Context) -> pb.ServerMetadataResponse:
        async def work(_: str) -> pb.ServerMetadataResponse:
            return pb.ServerMetadataResponse(**self.dataplane.server_metadata())

        return await self.calls.handle("ServerMetadata", context, Key.NONE, work)

    async def ModelMetadata(
        self, request: pb.ModelMetadataRequest, context: Context
    ) -> pb.ModelMetadataResponse:
        async def work(_: str) -> pb.ModelMetadataResponse:
            name, version = request.name or None, request.version or None
            document = self.dataplane.model_metadata(name, version)
            return encode.model_metadata(document)

        return await self.calls.handle("ModelMetadata", context, Key.OPS, work)

    async def ModelConfig(
        self, request: pb.ModelConfigRequest, context: Context
    ) -> pb.ModelConfigResponse:
        async def work(_: str) -> pb.ModelConfigResponse:
            name, version = request.name or None, request.version or None
            document = self.dataplane.model_config(name, version)
            return encode.model_config(document)

        return await self.calls.handle("ModelConfig", context, Key.OPS, work)

    async def ModelStatistics(
        self, request: pb.ModelStatisticsRequest, context: Context
    ) -> pb.ModelStatisticsResponse:
        """Every model version's statistics when no name is given, as Triton answers."""

        async def work(_: str) -> pb.ModelStatisticsResponse:
            name, version = request.name or None, request.version or None
            return encode.model_statistics(self.dataplane.model_statistics(name, version))

        return await self.calls.handle("ModelStatistics", context, Key.OPS, work)

    async def RepositoryIndex(
        self, request: pb.RepositoryIndexRequest, context: Context
    ) -> pb.RepositoryIndexResponse:
        async def work(_: str) -> pb.RepositoryIndexResponse:
            return encode.repository_index(self.dataplane.repository_index(request.ready))

        return await self.calls.handle("RepositoryIndex", context, Key.OPS, work)

    async def RepositoryModelLoad(
        self, request: pb.RepositoryModelLoadRequest, context: Context
    ) -> pb.RepositoryModelLoadResponse:
        async def work(_: str) -> pb.RepositoryModelLoadResponse:
            if request.parameters:
                raise MalformedRequest("configuration and file overrides are not offered")
            await self.dataplane.load_model(request.model_name)
            return pb.RepositoryModelLoadResponse()

        return await self.calls.handle("RepositoryModelLoad", context, Key.API, work)

    async def RepositoryModelUnload(
        self, request: pb.RepositoryModelUnloadRequest, context: Context
    ) -> pb.RepositoryModelUnloadResponse:
        async def work(_: str) -> pb.RepositoryModelUnloadResponse:
            if set(request.parameters) - {"unload_dependents"}:
                raise MalformedRequest("the one unload parameter is unload_dependents")
            await self.dataplane.unload_model(request.model_name)
            return pb.RepositoryModelUnloadResponse()

        return await self.calls.handle("RepositoryModelUnload", context, Key.API, work)

    async def ModelInfer(
        self, request: pb.ModelInferRequest, context: Context
    ) -> pb.ModelInferResponse:
        async def work(request_id: str) -> pb.ModelInferResponse:
            dataplane = self.dataplane
            own_timeout_s = decode.check(request)
            pipeline = dataplane.admit(request.model_name or None, request.model_version or None)
            typed = decode.typed_elements(request)
            with dataplane.track(pipeline), dataplane.uploads.holding() as hold:
                hold(decode.held_bytes(request, typed))

                async def decode_and_infer() -> InferenceResponse:
                    if typed >= decode.OFF_LOOP_ELEMENTS:
                        parsed = await asyncio.to_thread(decode.decode_request, request)
                    else:
                        parsed = decode.decode_request(request)
                    return await inference.infer(pipeline, parsed, request_id)

                gone, deadline = _client_gone(context), _deadline_s(context, own_timeout_s)
                result = await dataplane.run(decode_and_infer(), gone, deadline)
            return encode.infer_response(result)

        return await self.calls.handle("ModelInfer", context, Key.API, work)


def _not_offered(method: str, why: str) -> Callable[..., Awaitable[None]]:
    async def handler(self: InferenceService, request: Any, context: Context) -> None:
        await self.calls.refuse(method, context, NotOffered(why))

    handler.__name__ = method
    return handler


for _method, _why in NOT_OFFERED.items():
    setattr(InferenceService, _method, _not_offered(_method, _why))
