"""create_app(settings) -> FastAPI. The lifespan loads the engine, starts the batcher, warms up."""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from fastapi_offline import FastAPIOffline
from PIL import Image
from starlette.exceptions import HTTPException

from app.batching import DynamicBatcher
from app.config import Settings
from app.engine import Engine
from app.errors import InvalidParameter, MalformedRequest, MethodNotAllowed, NotFound, ServiceError
from app.metrics import Metrics
from app.middleware import RequestContextMiddleware
from app.preprocess import preprocess
from app.routes import classify, ops
from app.state import AppState

log = logging.getLogger(__name__)
EngineFactory = Callable[[], Engine]
RANDOM_WEIGHTS_WARNING = (
    "the model has random, untrained weights: its predictions are meaningless "
    "(export it with --weights imagenet)"
)


def load_engine(settings: Settings) -> Engine:
    """The real engine for these settings; raises ModelLoadError if it cannot be served."""
    return Engine(
        settings.model_path, settings.provider_list(), settings.resolved_intra_op_threads()
    )


def _start(state: AppState, engine: Engine) -> tuple[DynamicBatcher, ThreadPoolExecutor]:
    settings = state.settings
    spec = engine.spec
    state.engine = engine
    if spec.weights == "random":
        state.warnings.append(RANDOM_WEIGHTS_WARNING)
    state.warnings.extend(spec.metadata_warnings)
    for warning in state.warnings:
        log.warning("%s", warning)
    log.info(
        "serving %s (%s weights, %d classes) from %s on %s; batches of up to %d, %g ms delay",
        spec.name,
        spec.weights,
        spec.num_classes,
        settings.model_path,
        ", ".join(engine.providers),
        settings.max_batch_size,
        settings.max_batch_delay_ms,
    )
    state.metrics.model_info.labels(
        spec.name, spec.arch or "", spec.weights, ",".join(engine.providers)
    ).set(1)
    batcher = DynamicBatcher(
        engine.run,
        state.metrics,
        max_batch_size=1 if spec.fixed_batch == 1 else settings.max_batch_size,
        max_batch_delay_s=settings.max_batch_delay_ms / 1e3,
        max_queue_size=settings.max_queue_size,
    )
    batcher.start()
    pool = ThreadPoolExecutor(
        settings.resolved_preprocess_threads(), thread_name_prefix="preprocess"
    )
    state.batcher, state.preprocess_pool = batcher, pool
    return batcher, pool


def _sample_jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (640, 480), (120, 140, 160)).save(buffer, format="JPEG")
    return buffer.getvalue()


async def _warm_up(
    state: AppState, engine: Engine, batch_size: int, pool: ThreadPoolExecutor
) -> None:
    """Warm the model and every preprocessing thread (decoders load lazily) before ready."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    sample, recipe = _sample_jpeg(), engine.spec.recipe
    try:
        await asyncio.gather(
            *(
                loop.run_in_executor(pool, preprocess, sample, recipe, 10**6)
                for _ in range(state.settings.resolved_preprocess_threads())
            )
        )
        await asyncio.to_thread(engine.warm_up, state.settings.warmup_runs, batch_size)
    except Exception as exc:
        # A model that loads but cannot run (e.g. a graph that only works at batch 1, or
        # out of GPU memory at the maximum batch) must not sit "not ready" forever.
        log.exception("warm-up failed; the service cannot serve this model")
        state.warmup_error = f"warm-up failed: {type(exc).__name__}"
        if state.on_fatal is not None:
            state.on_fatal()
        return
    state.warmed_up = True
    state.set_ready_gauge()
    log.info("warm-up done in %.2f s; ready", asyncio.get_running_loop().time() - started)


def _lifespan(
    engine_factory: EngineFactory,
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state: AppState = app.state.service
        engine = await asyncio.to_thread(engine_factory)
        batcher, pool = _start(state, engine)
        warm_up = asyncio.create_task(_warm_up(state, engine, batcher.max_batch_size, pool))
        try:
            yield
        finally:
            state.draining = True
            state.set_ready_gauge()
            warm_up.cancel()
            try:  # an inference stuck in the GPU driver must not hold the exit forever
                await asyncio.wait_for(batcher.close(), timeout=state.settings.shutdown_grace_s)
            except TimeoutError:
                log.error("inference did not finish within the grace period; exiting anyway")
            pool.shutdown(wait=False, cancel_futures=True)

    return lifespan


def _install_error_handlers(app: FastAPI, state: AppState) -> None:
    def respond(request: Request, error: ServiceError) -> JSONResponse:
        state.metrics.errors.labels(error.code).inc()
        return error.response(request.scope.get("state", {}).get("request_id"))

    async def service_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ServiceError)
        return respond(request, exc)

    async def validation_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'][1:]) or e['loc'][0]}: {e['msg']}"
            for e in exc.errors()
        )
        return respond(request, InvalidParameter(problems or "invalid request"))

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, HTTPException)
        mapped = {404: NotFound, 405: MethodNotAllowed}.get(exc.status_code, MalformedRequest)
        return respond(request, mapped(str(exc.detail)))

    app.add_exception_handler(ServiceError, service_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(HTTPException, http_error)


def create_app(
    settings: Settings | None = None, engine_factory: EngineFactory | None = None
) -> FastAPI:
    """The service. `engine_factory` defaults to loading settings.model_path."""
    settings = settings or Settings()
    state = AppState(settings=settings, metrics=Metrics())
    factory = engine_factory or (lambda: load_engine(settings))
    # FastAPIOffline serves the Swagger UI and ReDoc assets itself, so /docs also works
    # where no CDN can be reached (air-gapped clusters, these build machines).
    app = FastAPIOffline(
        title="DenseNet image classification",
        version="0.1.0",
        description="Classify images with a DenseNet on ONNX Runtime. Errors always have the "
        'shape {"error": {"code": ..., "message": ...}}.',
        lifespan=_lifespan(factory),
    )
    app.state.service = state
    app.include_router(classify.router)
    app.include_router(ops.router)
    _install_error_handlers(app, state)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["*"],
        )

    def body_limit(path: str) -> int:
        if path == "/classify":
            return settings.max_upload_bytes
        if path == "/classify/batch":
            return settings.max_batch_upload_bytes
        return 64 * 1024  # nothing else takes a body

    def activity(delta: int) -> None:
        state.active_requests += delta

    app.add_middleware(
        RequestContextMiddleware,
        metrics=state.metrics,
        activity=activity,
        body_limit=body_limit,
        body_timeout_s=settings.body_read_timeout_s,
    )
    return app
