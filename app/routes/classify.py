"""Classification endpoints: parse the upload -> preprocess -> batcher -> top-k."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, Query, Request
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from app.engine import Engine
from app.errors import (
    ClientDisconnected,
    InternalError,
    InvalidImage,
    InvalidParameter,
    MalformedRequest,
    MissingFile,
    Overloaded,
    ServiceError,
    Timeout,
    UnsupportedMediaType,
)
from app.postprocess import softmax, top_k
from app.preprocess import preprocess
from app.routes.auth import require_api_key
from app.schemas import (
    BatchClassification,
    BatchItem,
    Classification,
    ErrorDetail,
    ErrorResponse,
    Prediction,
    Timings,
)
from app.state import AppState, get_state

log = logging.getLogger(__name__)
router = APIRouter(tags=["classification"], dependencies=[Depends(require_api_key)])
State = Annotated[AppState, Depends(get_state)]
T = TypeVar("T")

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
        408: "request body arrived too slowly",
        413: "body over the byte limit, or image over the pixel limit",
        415: "unsupported content type",
        422: "invalid parameter (e.g. top_k)",
        503: "queue full, not ready, or shutting down (see Retry-After)",
        504: "not classified within the request timeout",
    }.items()
}
TopK = Annotated[
    int | None,
    Query(ge=1, description="How many predictions to return (default: the configured default)."),
]


def _top_k(state: AppState, requested: int | None, num_classes: int) -> int:
    """The client's top_k, checked; or the default, capped at what this model has."""
    limit = min(state.settings.max_top_k, num_classes)
    if requested is None:
        return min(state.settings.default_top_k, limit)
    if requested > limit:
        raise InvalidParameter(f"top_k must be between 1 and {limit}")
    return requested


async def _read_images(
    request: Request, field: str, max_files: int
) -> list[tuple[str | None, bytes]]:
    try:
        return await _parse_upload(request, field, max_files)
    except ClientDisconnect:  # the client gave up mid-upload: not a server error
        raise ClientDisconnected("client closed the connection during the upload") from None


async def _parse_upload(
    request: Request, field: str, max_files: int
) -> list[tuple[str | None, bytes]]:
    """The uploaded images as (filename, bytes): multipart `field`, or a raw image body."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media == "multipart/form-data":
        try:
            form = await request.form(max_files=max_files + 1, max_fields=max_files + 16)
        except HTTPException as exc:
            raise MalformedRequest(f"malformed multipart body: {exc.detail}") from None
        try:
            uploads = [v for v in form.getlist(field) if isinstance(v, UploadFile)]
            if not uploads:
                raise MissingFile(f"multipart body has no file field named '{field}'")
            if len(uploads) > max_files:
                raise MalformedRequest(f"send at most {max_files} file(s) in '{field}'")
            return [(upload.filename, await upload.read()) for upload in uploads]
        finally:
            await form.close()
    if media.startswith("image/") or media == "application/octet-stream":
        if field == "files":
            raise UnsupportedMediaType("/classify/batch takes multipart/form-data only")
        return [(None, await request.body())]
    raise UnsupportedMediaType(
        f"unsupported content type '{media or 'none'}'; send multipart/form-data or image/*"
    )


async def _classify(state: AppState, data: bytes, k: int, received: float) -> Classification:
    engine, batcher, pool = state.require_ready(admit=False)  # admitted at the route
    if not data:
        raise InvalidImage("the file is empty")
    settings, metrics = state.settings, state.metrics
    # Images waiting for a preprocessing thread count against the queue limit too: else,
    # when decoding is the bottleneck, they pile up (holding their uploads) without a 503.
    if state.preprocessing + batcher.queue_depth >= settings.max_queue_size:
        raise Overloaded(f"the queue is full ({settings.max_queue_size} images waiting)")
    started = time.perf_counter()
    # Counted on the thread's work item, not the awaiting task: a cancelled request's
    # decode still occupies a thread (and its upload) until it finishes.
    loop = asyncio.get_running_loop()
    work = pool.submit(
        preprocess, data, engine.spec.recipe, settings.max_image_pixels, settings.jpeg_draft
    )
    state.preprocessing += 1
    work.add_done_callback(lambda _: loop.call_soon_threadsafe(state.preprocessing_done))
    tensor = await asyncio.wrap_future(work)
    preprocess_s = time.perf_counter() - started
    metrics.preprocess_seconds.observe(preprocess_s)
    result = await batcher.submit(tensor)
    ranked = top_k(softmax(result.output), k)
    metrics.images.inc()
    labels = engine.spec.labels
    return Classification(
        model=engine.spec.name,
        predictions=[Prediction(label=labels[i], class_index=i, probability=p) for i, p in ranked],
        timings=Timings(
            queue_ms=round(result.queue_wait_s * 1e3, 3),
            preprocess_ms=round(preprocess_s * 1e3, 3),
            inference_ms=round(result.inference_s * 1e3, 3),
            total_ms=round((time.perf_counter() - received) * 1e3, 3),
        ),
        warnings=state.warnings,
    )


async def _until_disconnect(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def _bounded(request: Request, state: AppState, work: Awaitable[T]) -> T:
    """Run `work` within the request timeout; abandon it if the client goes away."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_until_disconnect(request))
    try:
        timeout = state.settings.request_timeout_s
        done, _ = await asyncio.wait(
            {task, watcher}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
        )
        if task in done:
            return task.result()
        if watcher in done:
            raise ClientDisconnected("client closed the connection")
        raise Timeout(f"image not classified within {timeout:g} s")
    finally:
        for pending in (task, watcher):
            pending.cancel()


async def _admit(
    request: Request, state: AppState, top_k: int | None, field: str, max_files: int
) -> tuple[Engine, int, list[tuple[str | None, bytes]], float]:
    """Refuse early (not ready, bad top_k), then read the upload; returns when it arrived."""
    engine, _, _ = state.require_ready()
    k = _top_k(state, top_k, engine.spec.num_classes)
    images = await _read_images(request, field, max_files)
    return engine, k, images, time.perf_counter()


@router.post(
    "/classify",
    response_model=Classification,
    responses=_ERRORS,
    openapi_extra=_body_doc("file", many=False),
    summary="Classify one image",
)
async def classify(request: Request, state: State, top_k: TopK = None) -> Classification:
    """Send one image as multipart field `file`, or as the raw body with an image/* type."""
    _, k, [(_, data)], received = await _admit(request, state, top_k, "file", max_files=1)
    return await _bounded(request, state, _classify(state, data, k, received))


@router.post(
    "/classify/batch",
    response_model=BatchClassification,
    responses=_ERRORS,
    openapi_extra=_body_doc("files", many=True),
    summary="Classify several images",
)
async def classify_batch(request: Request, state: State, top_k: TopK = None) -> BatchClassification:
    """Send images as multipart fields `files`; each succeeds or fails on its own."""
    max_files = state.settings.max_batch_images
    engine, k, images, received = await _admit(request, state, top_k, "files", max_files)

    async def one(data: bytes) -> Classification | BaseException:
        try:
            return await _classify(state, data, k, received)
        except ServiceError as exc:
            state.metrics.errors.labels(exc.code).inc()
            return exc
        except Exception:
            log.exception("unhandled error in a batch item")
            return InternalError("internal error")

    outcomes = await _bounded(request, state, asyncio.gather(*(one(data) for _, data in images)))
    results = []
    for index, ((filename, _), outcome) in enumerate(zip(images, outcomes, strict=True)):
        if isinstance(outcome, Classification):
            results.append(BatchItem(index=index, filename=filename, result=outcome))
        else:
            code = outcome.code if isinstance(outcome, ServiceError) else InternalError.code
            message = outcome.message if isinstance(outcome, ServiceError) else "internal error"
            results.append(
                BatchItem(
                    index=index, filename=filename, error=ErrorDetail(code=code, message=message)
                )
            )
    return BatchClassification(model=engine.spec.name, results=results)
