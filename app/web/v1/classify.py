"""Classification endpoints: parse -> pick a pipeline -> await it -> render."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request

from app.dataplane import DataPlane
from app.errors import InternalError, ServiceError
from app.pipeline import Pipeline
from app.predictions import Classified
from app.web.auth import require_api_key
from app.web.deps import client_gone, get_dataplane
from app.web.errors import count, error_body, request_id
from app.web.middleware import declare_body_limit
from app.web.uploads import read_images
from app.web.v1.schemas import (
    BatchClassification,
    BatchItem,
    Classification,
    ErrorDetail,
    ErrorResponse,
    Prediction,
    Timings,
)

log = logging.getLogger(__name__)
router = APIRouter(tags=["classification"], dependencies=[Depends(require_api_key)])
DataPlaneDep = Annotated[DataPlane, Depends(get_dataplane)]

_BINARY = {"type": "string", "format": "binary"}
_RAW_IMAGE_TYPES = ("image/jpeg", "image/png", "image/webp", "image/gif", "image/bmp", "image/tiff")


def _body_doc(field: str, many: bool) -> dict[str, Any]:
    part = {"type": "array", "items": _BINARY} if many else _BINARY
    content: dict[str, Any] = {
        "multipart/form-data": {
            "schema": {"type": "object", "required": [field], "properties": {field: part}}
        }
    }
    if not many:
        content.update({media: {"schema": _BINARY} for media in _RAW_IMAGE_TYPES})
    return {"requestBody": {"required": True, "content": content}}


_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": text}
    for status, text in {
        400: "not an image, corrupt image, or malformed multipart body",
        401: "API key required (only when one is configured)",
        404: "no such model or version (model_not_found)",
        408: "request body arrived too slowly",
        413: "body over the byte limit, or image over the pixel limit",
        415: "unsupported content type",
        422: "invalid parameter (e.g. top_k)",
        503: "queue full, uploads over budget, not ready, or shutting down (see Retry-After)",
        504: "not classified within the request timeout",
    }.items()
}
TopK = Annotated[
    int | None,
    Query(ge=1, description="How many predictions to return (default: the configured default)."),
]
ModelName = Annotated[
    str | None,
    Query(description="Model to use (GET /models); default: the default model."),
]
ModelVersion = Annotated[
    int | None, Query(ge=1, description="Version of the model; default: its latest.")
]


def _render(pipeline: Pipeline, result: Classified, received: float) -> Classification:
    return Classification(
        model=pipeline.name,
        version=pipeline.version,
        predictions=[
            Prediction(label=p.label, class_index=p.class_index, probability=p.probability)
            for p in result.predictions
        ],
        timings=Timings(
            queue_ms=round(result.queue_s * 1e3, 3),
            preprocess_ms=round(result.preprocess_s * 1e3, 3),
            inference_ms=round(result.inference_s * 1e3, 3),
            total_ms=round((time.perf_counter() - received) * 1e3, 3),
        ),
        warnings=pipeline.warnings,
    )


@router.post(
    "/classify",
    response_model=Classification,
    responses=_ERRORS,
    openapi_extra=_body_doc("file", many=False),
    summary="Classify one image",
)
async def classify(
    request: Request,
    dataplane: DataPlaneDep,
    top_k: TopK = None,
    model: ModelName = None,
    version: ModelVersion = None,
) -> Classification:
    """Send one image as multipart field `file`, or as the raw body with an image/* type."""
    pipeline = dataplane.admit(model, version)
    k = pipeline.top_k(top_k)
    with dataplane.track(pipeline):
        declare_body_limit(request, dataplane.settings.max_upload_bytes)
        [(_, data)] = await read_images(request, "file", max_files=1)
        received = time.perf_counter()
        work = pipeline.classify(data, k, request_id(request))
        result = await dataplane.run(work, client_gone(request))
        return _render(pipeline, result, received)


@router.post(
    "/classify/batch",
    response_model=BatchClassification,
    responses=_ERRORS,
    openapi_extra=_body_doc("files", many=True),
    summary="Classify several images",
)
async def classify_batch(
    request: Request,
    dataplane: DataPlaneDep,
    top_k: TopK = None,
    model: ModelName = None,
    version: ModelVersion = None,
) -> BatchClassification:
    """Send images as multipart fields `files`; each succeeds or fails on its own."""
    pipeline = dataplane.admit(model, version)
    k = pipeline.top_k(top_k)
    settings, req_id = dataplane.settings, request_id(request)
    with dataplane.track(pipeline):
        declare_body_limit(request, settings.max_batch_upload_bytes)
        images = await read_images(request, "files", settings.max_batch_images)
        received = time.perf_counter()

        async def one(data: bytes) -> Classification | ServiceError:
            try:
                return _render(pipeline, await pipeline.classify(data, k, req_id), received)
            except ServiceError as exc:
                count(dataplane.metrics, exc)
                return exc
            except Exception:
                log.exception("unhandled error in a batch item (request id %s)", req_id)
                return InternalError("internal error; quote the request id when reporting it")

        work = asyncio.gather(*(one(data) for _, data in images))
        outcomes = await dataplane.run(work, client_gone(request))
    results = [
        BatchItem(index=i, filename=filename, result=outcome)
        if isinstance(outcome, Classification)
        else BatchItem(index=i, filename=filename, error=ErrorDetail(**error_body(outcome)))
        for i, ((filename, _), outcome) in enumerate(zip(images, outcomes, strict=True))
    ]
    return BatchClassification(model=pipeline.name, version=pipeline.version, results=results)
