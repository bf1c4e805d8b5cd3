"""create_app(settings) -> FastAPI. The lifespan loads the models, starts their
pipelines and warms them up; on the way out it finishes what was accepted."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi_offline import FastAPIOffline

from app import __version__
from app.config import Settings
from app.dataplane import DataPlane
from app.metrics import Metrics
from app.model_control import ModelControl
from app.repository import (
    EngineLoader,
    LoadedModel,
    ModelRepository,
    default_engine_loader,
    load_models,
)
from app.web import errors as http_errors
from app.web import page
from app.web.middleware import RequestContextMiddleware
from app.web.v1 import classify, ops
from app.web.v2 import routes as protocol_v2

log = logging.getLogger(__name__)


def _announce(repository: ModelRepository, settings: Settings) -> None:
    for pipeline in repository:
        about = pipeline.describe()
        for warning in about.warnings:
            log.warning("%s v%d: %s", about.name, about.version, warning)
        log.info(
            "serving %s v%d (%s, %s weights, %d classes) in %s on %s (%s); batches of up to %d",
            about.name,
            about.version,
            about.arch or "unknown architecture",
            about.weights,
            about.num_classes,
            about.precision,
            about.runtime,
            ", ".join(about.providers),
            about.max_batch_size,
        )
    log.info(
        "default model: %s; batch delay %g ms", repository.default_name, settings.max_batch_delay_ms
    )


async def _warm_up(dataplane: DataPlane, repository: ModelRepository) -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        await repository.warm_up()
    except Exception:
        # A model that loads but cannot run (a graph that only works at batch 1, out of
        # GPU memory at the maximum batch) must not sit "not ready" forever.
        log.exception("warm-up failed; the dataplane cannot serve this model")
        if dataplane.on_fatal is not None:
            dataplane.on_fatal()
        return
    log.info("warm-up done in %.2f s; ready", loop.time() - started)


def _control(
    dataplane: DataPlane,
    repository: ModelRepository,
    loader: Callable[[], EngineLoader],
    models: list[LoadedModel],
) -> asyncio.Task[None] | None:
    """Model control, when the settings ask for it; the polling task in poll mode."""
    settings = dataplane.settings
    if settings.model_control == "none":
        return None
    control = ModelControl(repository, loader(), settings, dataplane.metrics, models)
    dataplane.control = control
    if settings.model_control == "explicit":
        if settings.api_key is None and not settings.model_control_open:
            log.warning(
                "model control is explicit but no DENSENET_API_KEY is set: load and unload "
                "requests will be refused (DENSENET_MODEL_CONTROL_OPEN=true allows them)"
            )
        return None
    log.info("polling %s every %g s", settings.model_repository, settings.repository_poll_s)
    return asyncio.create_task(control.run_polling())


def _lifespan(
    load: Callable[[], list[LoadedModel]], loader: Callable[[], EngineLoader]
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        dataplane: DataPlane = app.state.dataplane
        models = await asyncio.to_thread(load)
        repository = ModelRepository(models, dataplane.settings, dataplane.metrics)
        _announce(repository, dataplane.settings)
        dataplane.drain.on_begin(repository.stop_waiting)
        repository.start()
        dataplane.repository = repository
        warm_up = asyncio.create_task(_warm_up(dataplane, repository))
        polling = _control(dataplane, repository, loader, models)
        try:
            yield
        finally:
            dataplane.drain.begin(dataplane.settings.shutdown_grace_s)
            warm_up.cancel()
            if polling is not None:
                polling.cancel()
            # What is left of the one grace period, not a second one: a stuck inference
            # must not hold the exit (python -m app exits without joining its thread).
            try:
                async with asyncio.timeout(max(0.1, dataplane.drain.remaining_s())):
                    await repository.close()
            except TimeoutError:
                # Said only of what is really left: uploads still arriving are not inference.
                left = [f"{n} image(s) still queued"] if (n := repository.unfinished) else []
                if repository.threads_busy:
                    left.append("a model still running on a worker thread")
                if left:
                    log.error("grace period over with %s; exiting anyway", " and ".join(left))

    return lifespan


def create_app(
    settings: Settings | None = None,
    engine_loader: EngineLoader | None = None,
    loaded: list[LoadedModel] | None = None,
) -> FastAPI:
    """The dataplane. Models are `loaded` already (python -m app loads them before serving,
    to fail fast), or loaded by the lifespan with `engine_loader` (default: ONNX Runtime)."""
    settings = settings or Settings()
    dataplane = DataPlane(settings=settings, metrics=Metrics())

    def load() -> list[LoadedModel]:
        return loaded if loaded is not None else load_models(settings, engine_loader)

    def loader() -> EngineLoader:
        return engine_loader or default_engine_loader(settings)

    # FastAPIOffline serves the Swagger UI and ReDoc assets itself, so /docs also works
    # where no CDN can be reached (air-gapped clusters, these build machines).
    app = FastAPIOffline(
        title="DenseNet image classification",
        version=__version__,
        description="Classify images with DenseNets (or any annotated ONNX classifier) on "
        'ONNX Runtime. Errors always have the shape {"error": {"code": ..., "message": ...}}.',
        lifespan=_lifespan(load, loader),
    )
    app.state.dataplane = dataplane
    app.include_router(classify.router)
    app.include_router(ops.router)
    if settings.ui:
        app.include_router(page.router_for(settings))
    app.include_router(protocol_v2.router)
    http_errors.install(app, dataplane.metrics)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["*"],
        )
    app.add_middleware(
        RequestContextMiddleware,
        metrics=dataplane.metrics,
        drain=dataplane.drain,
        body_timeout_s=settings.body_read_timeout_s,
        budget=dataplane.uploads,
        linger_bytes=settings.max_upload_bytes,
    )
    return app
