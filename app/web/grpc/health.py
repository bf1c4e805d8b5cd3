"""`grpc.health.v1.Health`, as Kubernetes gRPC probes and grpc_health_probe ask it."""

from __future__ import annotations

from app.dataplane import DataPlane
from app.errors import NotFound
from app.web.grpc.service import SERVICE_NAME, Calls, Context, Key
from app.web.grpc.stubs import health_pb2, health_pb2_grpc


class Health(health_pb2_grpc.HealthServicer):
    """grpc.health.v1 Check, as Kubernetes gRPC probes ask it: SERVING while the service is
    ready (models warm, not draining) for "" and the inference service, else NOT_SERVING;
    NOT_FOUND for a service this server does not have (the health protocol's rule)."""

    def __init__(self, dataplane: DataPlane) -> None:
        self.dataplane = dataplane
        self.calls = Calls(dataplane)

    async def Check(
        self, request: health_pb2.HealthCheckRequest, context: Context
    ) -> health_pb2.HealthCheckResponse:
        async def work(_: str) -> health_pb2.HealthCheckResponse:
            if request.service not in ("", SERVICE_NAME):
                raise NotFound(f"no service named {request.service!r:.80}")
            statuses = health_pb2.HealthCheckResponse
            status = statuses.SERVING if self.dataplane.ready else statuses.NOT_SERVING
            return statuses(status=status)

        return await self.calls.handle("Check", context, Key.NONE, work)
