"""Operator endpoints: liveness, readiness, metrics, model info."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from app.errors import NotReady
from app.routes.auth import require_ops_key
from app.schemas import BatchingInfo, ErrorResponse, Health, ModelInfo
from app.state import AppState, get_state

router = APIRouter(tags=["operations"])
State = Annotated[AppState, Depends(get_state)]


@router.get("/health/live", response_model=Health, summary="The process is up")
async def live() -> Health:
    return Health(status="ok")


@router.get(
    "/health/ready",
    response_model=Health,
    summary="The model is loaded and warm, and the service is not draining",
    responses={503: {"model": ErrorResponse, "description": "loading or shutting down"}},
)
async def ready(state: State) -> Health:
    state.require_ready()
    return Health(status="ready")


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    dependencies=[Depends(require_ops_key)],
    response_class=Response,
)
async def metrics(state: State) -> Response:
    return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)


@router.get(
    "/v1/model",
    response_model=ModelInfo,
    include_in_schema=False,
    dependencies=[Depends(require_ops_key)],
)
@router.get(
    "/model",
    response_model=ModelInfo,
    summary="The model being served",
    dependencies=[Depends(require_ops_key)],
)
async def model(state: State) -> ModelInfo:
    if state.engine is None:
        raise NotReady("the model is still loading")
    spec, settings = state.engine.spec, state.settings
    recipe = spec.recipe
    return ModelInfo(
        name=spec.name,
        arch=spec.arch,
        weights=spec.weights,
        weights_source=spec.weights_source,
        input_shape=["N", 3, recipe.crop_size, recipe.crop_size],
        num_classes=spec.num_classes,
        preprocessing={
            "resize_size": recipe.resize_size,
            "crop_size": recipe.crop_size,
            "interpolation": recipe.interpolation,
            "mean": list(recipe.mean),
            "std": list(recipe.std),
            "jpeg_draft": settings.jpeg_draft,
        },
        providers=state.engine.providers,
        batching=BatchingInfo(
            max_batch_size=state.batcher.max_batch_size if state.batcher else 0,
            max_batch_delay_ms=settings.max_batch_delay_ms,
            max_queue_size=settings.max_queue_size,
        ),
        warnings=state.warnings,
    )
