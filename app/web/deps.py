"""What every route reaches through FastAPI: the data plane, and the client's going away."""

from __future__ import annotations

from starlette.requests import Request

from app.dataplane import DataPlane


def get_dataplane(request: Request) -> DataPlane:
    dataplane: DataPlane = request.app.state.dataplane
    return dataplane


async def client_gone(request: Request) -> None:
    """Completes when the client disconnects (call once its body has been read)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass
