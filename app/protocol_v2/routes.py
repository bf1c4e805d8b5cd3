"""Open Inference Protocol (v2) HTTP/REST routes: parse -> pick a pipeline -> await -> render.

Paths, health semantics and bodies follow KServe's v2 protocol (HTTP/REST section; see
app/protocol_v2/__init__.py for the documents); `GET .../config` answers in Triton's
model configuration JSON and `POST /v2/repository/index` as Triton's repository index.
Errors are `{"error": "<code>: <message>"}` (rendered once, in app/http_errors.py).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request, Response
from pydantic import BaseModel, ConfigDict, ValidationError

from app.errors import MalformedRequest, ModelNotFound
from app.http_errors import request_id
from app.middleware import declare_body_limit
from app.names import is_model_name, parse_version
from app.pipeline import Pipeline
from app.protocol_v2 import dataplane
from app.protocol_v2.rest_decode import read_request
from app.protocol_v2.rest_encode import encode_response
from app.routes.admission import bounded, pick
from app.routes.auth import require_api_key, require_ops_key
from app.state import Service, get_service

SERVER_NAME = "densenet-serve"
router = APIRouter(prefix="/v2", tags=["open inference protocol (v2)"])
ServiceDep = Annotated[Service, Depends(get_service)]
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


def _find(service: Service, name: str, version: str | None) -> Pipeline:
    """The named model version, loaded (ready or not): unknown names and versions are 404."""
    if not is_model_name(name):
        raise ModelNotFound(f"no model named {name!r:.80}")
    number = None if version is None else parse_version(version)
    if version is not None and number is None:
        raise ModelNotFound(f"model '{name}' has no version {version!r:.40}")
    return service.models().find(name, number)


def _pick(service: Service, name: str, version: str | None) -> Pipeline:
    """As `_find`, and refused (503) while loading or draining."""
    pipeline = _find(service, name, version)
    return pick(service, pipeline.name, pipeline.version)


@router.get("", summary="Server metadata", responses=_errors(503))
async def server_metadata(request: Request) -> dict[str, Any]:
    return {
        "name": SERVER_NAME,
        "version": request.app.version,
        "extensions": list(dataplane.EXTENSIONS),
    }


@router.get("/health/live", summary="200 while the process is up")
async def live() -> dict[str, bool]:
    return {"live": True}


@router.get(
    "/health/ready", summary="200 when every model is warm and not draining", responses=_errors(503)
)
async def ready(service: ServiceDep) -> dict[str, bool]:
    service.check_ready()
    return {"ready": True}


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
    service: ServiceDep, name: ModelName, version: Version | None = None
) -> dict[str, Any]:
    pipeline = _find(service, name, version)
    versions = [pipeline.version] if version else service.models().versions(pipeline.name)
    return dataplane.model_metadata(pipeline, versions)


@router.get(
    "/models/{name}/ready", summary="200 when the model is warm", responses=_errors(404, 503)
)
@router.get(
    "/models/{name}/versions/{version}/ready",
    summary="200 when the model version is warm",
    responses=_errors(404, 503),
)
async def model_ready(
    service: ServiceDep, name: ModelName, version: Version | None = None
) -> dict[str, Any]:
    pipeline = _pick(service, name, version)
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
    service: ServiceDep, name: ModelName, version: Version | None = None
) -> dict[str, Any]:
    return dataplane.model_config(_find(service, name, version))


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
    request: Request, service: ServiceDep, name: ModelName, version: Version | None = None
) -> Response:
    """The model's tensor (FP32 [N,3,H,W]) or `image` (BYTES [N], encoded images) in;
    the model's output, or its top K with `parameters: {"classification": K}`, out."""
    pipeline = _pick(service, name, version)
    with service.drain.track():
        limit = service.settings.max_batch_upload_bytes
        declare_body_limit(request, limit)
        parsed = await read_request(request, limit)
        work = dataplane.infer(pipeline, parsed, request_id(request))
        result = await bounded(request, service, work)
    body, headers = encode_response(result)
    return Response(body, headers=headers)


class _IndexRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    ready: bool = False


@router.post(
    "/repository/index",
    summary="Every served model version and its state",
    dependencies=[Depends(require_ops_key)],
    responses=_errors(400, 401, 503),
)
async def repository_index(request: Request, service: ServiceDep) -> list[dict[str, str]]:
    body = await request.body()
    try:
        query = _IndexRequest.model_validate_json(body) if body.strip() else _IndexRequest()
    except ValidationError:
        raise MalformedRequest('the body must be empty or {"ready": true|false}') from None
    return dataplane.repository_index(list(service.models()), query.ready, service.drain.draining)
