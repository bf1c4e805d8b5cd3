"""Open Inference Protocol (v2) HTTP/REST routes: parse -> pick a pipeline -> await -> render.

Paths, health semantics and bodies follow KServe's v2 protocol (HTTP/REST section; see
app/web/v2/__init__.py for the documents); `GET .../config` answers in Triton's
model configuration JSON and `POST /v2/repository/index` as Triton's repository index.
Errors are `{"error": "<code>: <message>"}` (rendered once, in app/web/errors.py).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request, Response
from pydantic import BaseModel, ConfigDict, ValidationError
from starlette.requests import ClientDisconnect

from app.dataplane import DataPlane, inference
from app.dataplane.oip import InferenceResponse
from app.errors import ClientDisconnected, MalformedRequest
from app.web.auth import require_api_key, require_ops_key
from app.web.deps import client_gone, get_dataplane
from app.web.errors import request_id
from app.web.middleware import declare_body_limit
from app.web.v2.rest_decode import decode_request_off_loop
from app.web.v2.rest_encode import encode_response
from app.web.v2.rest_schema import HEADER_LENGTH

router = APIRouter(prefix="/v2", tags=["open inference protocol (v2)"])
DataPlaneDep = Annotated[DataPlane, Depends(get_dataplane)]
ModelName = Annotated[str, Path(description="A served model (GET /v2/repository/index).")]
Version = Annotated[str, Path(description="One of its versions; default: the latest.")]


class V2Error(BaseModel):
    error: str


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {status: {"model": V2Error} for status in statuses}


_INFER_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "JSON, or JSON followed by binary outputs (Inference-Header-Content-Length)",
        "content": {"application/json": {}, "application/octet-stream": {}},
    },
    **_errors(400, 401, 404, 408, 413, 415, 503, 504),
}


@router.get("", summary="Server metadata", responses=_errors(503))
async def server_metadata(dataplane: DataPlaneDep) -> dict[str, Any]:
    return dataplane.server_metadata()


@router.get("/health/live", summary="200 while the process is up")
async def live() -> dict[str, bool]:
    return {"live": True}


@router.get(
    "/health/ready", summary="200 when every model is warm and not draining", responses=_errors(503)
)
async def ready(dataplane: DataPlaneDep) -> dict[str, bool]:
    dataplane.check_ready()
    return {"ready": True}


_OPS = [Depends(require_ops_key)]


@router.get(
    "/models/stats",
    summary="Every model version's statistics",
    dependencies=_OPS,
    responses=_errors(401, 503),
)
async def statistics(dataplane: DataPlaneDep) -> dict[str, Any]:
    """Triton's statistics extension, for every served model version."""
    return dataplane.model_statistics()


@router.get(
    "/models/{name}/stats",
    summary="A model's statistics, every version",
    dependencies=_OPS,
    responses=_errors(401, 404, 503),
)
async def model_statistics(dataplane: DataPlaneDep, name: ModelName) -> dict[str, Any]:
    return dataplane.model_statistics(name)


@router.get(
    "/models/{name}/versions/{version}/stats",
    summary="A model version's statistics",
    dependencies=_OPS,
    responses=_errors(401, 404, 503),
)
async def version_statistics(
    dataplane: DataPlaneDep, name: ModelName, version: Version
) -> dict[str, Any]:
    return dataplane.model_statistics(name, version)


@router.get(
    "/models/{name}",
    summary="Model metadata",
    dependencies=[Depends(require_ops_key)],
    responses=_errors(401, 404, 503),
)
@router.get(
    "/models/{name}/versions/{version}",
    summary="Model version metadata",
    dependencies=[Depends(require_ops_key)],
    responses=_errors(401, 404, 503),
)
async def model_metadata(
    dataplane: DataPlaneDep, name: ModelName, version: Version | None = None
) -> dict[str, Any]:
    return dataplane.model_metadata(name, version)


@router.get(
    "/models/{name}/ready", summary="200 when the model is warm", responses=_errors(404, 503)
)
@router.get(
    "/models/{name}/versions/{version}/ready",
    summary="200 when the model version is warm",
    responses=_errors(404, 503),
)
async def model_ready(
    dataplane: DataPlaneDep, name: ModelName, version: Version | None = None
) -> dict[str, Any]:
    pipeline = dataplane.admit(name, version)
    return {"name": pipeline.name, "ready": True}


@router.get(
    "/models/{name}/config",
    summary="Model configuration, in Triton's JSON form",
    dependencies=[Depends(require_ops_key)],
    responses=_errors(401, 404, 503),
)
@router.get(
    "/models/{name}/versions/{version}/config",
    summary="Model version configuration, in Triton's JSON form",
    dependencies=[Depends(require_ops_key)],
    responses=_errors(401, 404, 503),
)
async def model_config(
    dataplane: DataPlaneDep, name: ModelName, version: Version | None = None
) -> dict[str, Any]:
    return dataplane.model_config(name, version)


@router.post(
    "/models/{name}/infer",
    summary="Inference (JSON or binary tensor data)",
    dependencies=[Depends(require_api_key)],
    response_class=Response,
    responses=_INFER_RESPONSES,
)
@router.post(
    "/models/{name}/versions/{version}/infer",
    summary="Inference on one model version",
    dependencies=[Depends(require_api_key)],
    response_class=Response,
    responses=_INFER_RESPONSES,
)
async def infer(
    request: Request, dataplane: DataPlaneDep, name: ModelName, version: Version | None = None
) -> Response:
    """The model's tensor (FP32 [N,3,H,W]) or `image` (BYTES [N], encoded images) in;
    the model's output, or its top K with `parameters: {"classification": K}`, out."""
    pipeline = dataplane.admit(name, version)
    limits = dataplane.decode_limits(pipeline)
    with dataplane.track(pipeline), dataplane.uploads.holding() as hold:
        declare_body_limit(request, limits.body_bytes)
        try:
            body = await request.body()
        except ClientDisconnect:
            raise ClientDisconnected("client closed the connection during the upload") from None
        header_length = request.headers.get(HEADER_LENGTH)
        encoding = request.headers.get("content-encoding", "").strip().lower()

        async def decode_and_infer() -> InferenceResponse:
            parsed = await decode_request_off_loop(body, header_length, encoding, limits, hold)
            return await inference.infer(pipeline, parsed, request_id(request))

        # The deadline covers decoding too: everything after the body has arrived.
        result = await dataplane.run(decode_and_infer(), client_gone(request))
    content, headers = encode_response(result)
    return Response(content, headers=headers)


class _IndexRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    ready: bool = False


@router.post(
    "/repository/index",
    summary="Every served model version and its state",
    dependencies=[Depends(require_ops_key)],
    responses=_errors(400, 401, 503),
)
async def repository_index(request: Request, dataplane: DataPlaneDep) -> list[dict[str, str]]:
    body = await request.body()
    try:
        query = _IndexRequest.model_validate_json(body) if body.strip() else _IndexRequest()
    except ValidationError:
        raise MalformedRequest('the body must be empty or {"ready": true|false}') from None
    return dataplane.repository_index(query.ready)


class _ControlParameters(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    unload_dependents: bool = False  # Triton's unload parameter; there are no ensembles here


class _ControlRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    parameters: _ControlParameters | None = None


async def _control_request(request: Request, what: str) -> _ControlRequest:
    body = await request.body()
    try:
        return _ControlRequest.model_validate_json(body) if body.strip() else _ControlRequest()
    except ValidationError:
        raise MalformedRequest(
            f'the {what} body must be empty or {{"parameters": {{}}}}'
            + (' (unload: {"unload_dependents": true|false})' if what == "unload" else "")
            + "; configuration and file overrides are not offered"
        ) from None


@router.post(
    "/repository/models/{name}/load",
    summary="Load or reload a model from the repository (DENSENET_MODEL_CONTROL=explicit)",
    dependencies=[Depends(require_api_key)],
    response_class=Response,
    responses={200: {"description": "the model serves"}, **_errors(400, 401, 403, 404, 409, 503)},
)
async def load_model(request: Request, dataplane: DataPlaneDep, name: ModelName) -> Response:
    """Every version in the model's directory, loaded and warmed before it takes requests;
    a version that fails leaves what served before (409 model_load_failed says why)."""
    query = await _control_request(request, "load")
    if query.parameters is not None and query.parameters.unload_dependents:
        raise MalformedRequest("unload_dependents is an unload parameter")
    await dataplane.load_model(name)
    return Response(status_code=200)


@router.post(
    "/repository/models/{name}/unload",
    summary="Unload every version of a model (DENSENET_MODEL_CONTROL=explicit)",
    dependencies=[Depends(require_api_key)],
    response_class=Response,
    responses={
        200: {"description": "the model is unloaded"},
        **_errors(400, 401, 403, 404, 409, 503),
    },
)
async def unload_model(request: Request, dataplane: DataPlaneDep, name: ModelName) -> Response:
    """Its requests in flight finish first (within the grace period)."""
    await _control_request(request, "unload")
    await dataplane.unload_model(name)
    return Response(status_code=200)
