"""Operator endpoints: liveness, readiness, metrics, and what models are served."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from app.dataplane import DataPlane
from app.pipeline import Pipeline
from app.web.auth import require_ops_key
from app.web.deps import get_dataplane
from app.web.v1.schemas import BatchingInfo, ErrorResponse, Health, ModelInfo, ModelList

router = APIRouter(tags=["operations"])
DataPlaneDep = Annotated[DataPlane, Depends(get_dataplane)]
_MODEL_ERRORS: dict[int | str, dict[str, object]] = {
    404: {"model": ErrorResponse, "description": "no such model or version"},
    503: {"model": ErrorResponse, "description": "the models are still loading"},
}


@router.get("/health/live", response_model=Health, summary="The process is up")
async def live() -> Health:
    return Health(status="ok")


@router.get(
    "/health/ready",
    response_model=Health,
    summary="Every model is loaded and warm, and the dataplane is not draining",
    responses={503: {"model": ErrorResponse, "description": "loading or shutting down"}},
)
async def ready(dataplane: DataPlaneDep) -> Health:
    dataplane.check_ready()
    return Health(status="ready")


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    dependencies=[Depends(require_ops_key)],
    response_class=Response,
)
async def metrics(dataplane: DataPlaneDep) -> Response:
    return Response(generate_latest(dataplane.metrics.registry), media_type=CONTENT_TYPE_LATEST)


def _info(dataplane: DataPlane, pipeline: Pipeline) -> ModelInfo:
    about, repository = pipeline.describe(), dataplane.models()
    recipe = about.recipe
    latest = repository.versions(about.name)[-1] == about.version
    return ModelInfo(
        name=about.name,
        version=about.version,
        latest=latest,
        # Not find(): with model control the default model may be unloaded.
        default=latest and about.name == repository.default_name,
        ready=pipeline.ready,
        arch=about.arch,
        weights=about.weights,
        weights_source=about.weights_source,
        precision=about.precision,
        stored_precision=about.stored_precision,
        runtime=about.runtime,
        input_shape=["N", 3, about.crop_size, about.crop_size],
        num_classes=about.num_classes,
        preprocessing={
            "resize_size": recipe.resize_size,
            "crop_size": recipe.crop_size,
            "interpolation": recipe.interpolation,
            "mean": list(recipe.mean),
            "std": list(recipe.std),
            "jpeg_draft": about.jpeg_draft,
        },
        providers=list(about.providers),
        batching=BatchingInfo(
            max_batch_size=about.max_batch_size,
            max_batch_delay_ms=about.max_batch_delay_ms,
            max_queue_size=about.max_queue_size,
        ),
        warnings=list(about.warnings),
    )


@router.get(
    "/models",
    response_model=ModelList,
    summary="Every served model version",
    dependencies=[Depends(require_ops_key)],
    responses=_MODEL_ERRORS,
)
async def models(dataplane: DataPlaneDep) -> ModelList:
    repository = dataplane.models()
    return ModelList(
        default_model=repository.default_name,
        models=[_info(dataplane, pipeline) for pipeline in repository],
    )


ModelName = Annotated[str, Path(description="A served model (GET /models).")]


@router.get(
    "/models/{name}",
    response_model=ModelInfo,
    summary="One model (its latest version)",
    dependencies=[Depends(require_ops_key)],
    responses=_MODEL_ERRORS,
)
async def model_by_name(dataplane: DataPlaneDep, name: ModelName) -> ModelInfo:
    return _info(dataplane, dataplane.find(name))


@router.get(
    "/models/{name}/versions/{version}",
    response_model=ModelInfo,
    summary="One model version",
    dependencies=[Depends(require_ops_key)],
    responses=_MODEL_ERRORS,
)
async def model_version(
    dataplane: DataPlaneDep, name: ModelName, version: Annotated[int, Path(ge=1)]
) -> ModelInfo:
    return _info(dataplane, dataplane.find(name, version))


@router.get(
    "/v1/model",
    response_model=ModelInfo,
    include_in_schema=False,
    dependencies=[Depends(require_ops_key)],
)
@router.get(
    "/model",
    response_model=ModelInfo,
    summary="The default model (its latest version)",
    dependencies=[Depends(require_ops_key)],
    responses={503: {"model": ErrorResponse, "description": "still loading"}},
)
async def default_model(dataplane: DataPlaneDep) -> ModelInfo:
    return _info(dataplane, dataplane.models().find())
