"""The models a service serves: found in a Triton-style repository or one file, loaded
into engines before serving, then one Pipeline per (name, version), found by name.

Repository layout: DIR/<model name>/<version>/model.onnx, versions positive integers.
Every version present is served; a request without a version gets the latest. Names and
versions are matched only against what was loaded at start-up: no request reads a file.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from app.batching import InferenceDevice
from app.config import Settings
from app.engine import Engine, open_engine
from app.errors import ModelLoadError, ModelNotFound, NotReady, ServiceError, ShuttingDown
from app.fair_pool import FairPool
from app.metrics import Metrics
from app.names import NAME_RULE, is_model_name, parse_version
from app.pipeline import Pipeline, QueueShare
from app.precision import Hardware, choose, detect_hardware

log = logging.getLogger(__name__)

MODEL_FILE = "model.onnx"
EngineLoader = Callable[[Path], Engine]


@dataclass(frozen=True)
class LoadedModel:
    name: str
    version: int
    path: Path
    engine: Engine


def _versions(model_dir: Path) -> list[tuple[int, Path]]:
    versions: dict[int, Path] = {}
    for entry in sorted(model_dir.iterdir()):
        if not entry.is_dir() or entry.name.startswith("."):
            continue  # config.pbtxt, labels files and the like, as Triton keeps them
        version = parse_version(entry.name)
        if version is None:
            raise ModelLoadError(
                f"{model_dir}: version directory {entry.name!r:.40} is not a positive "
                "integer in ASCII digits"
            )
        if version in versions:
            raise ModelLoadError(f"{entry}: version {version} appears twice")
        model = entry / MODEL_FILE
        if not model.is_file():
            raise ModelLoadError(f"{entry}: no {MODEL_FILE} in this version directory")
        versions[version] = model
    if not versions:
        raise ModelLoadError(f"{model_dir}: model directory has no version directories")
    return sorted(versions.items())


def discover(repository: Path) -> list[tuple[str, int, Path]]:
    """(name, version, file) of every model version in a repository directory."""
    if not repository.is_dir():
        raise ModelLoadError(f"model repository {repository} is not a directory")
    found: list[tuple[str, int, Path]] = []
    for model_dir in sorted(repository.iterdir()):
        if model_dir.name.startswith("."):
            continue
        if not model_dir.is_dir():
            log.warning("model repository: ignoring %s (not a model directory)", model_dir)
            continue
        if not is_model_name(model_dir.name):
            raise ModelLoadError(
                f"{repository}: directory {model_dir.name!r:.80} is not a valid model name "
                f"({NAME_RULE})"
            )
        found.extend((model_dir.name, v, path) for v, path in _versions(model_dir))
    if not found:
        raise ModelLoadError(f"model repository {repository} has no models")
    return found


def default_engine_loader(settings: Settings, hardware: Hardware | None = None) -> EngineLoader:
    """Loads each file in the runtime and precision chosen once for the service;
    ModelLoadError at once when the precision asked for is not native here."""
    hardware = hardware or detect_hardware(settings.precision)
    choice = choose(settings.precision, hardware, settings.provider_list())
    log.info(
        "precision %s: %s on %s (%s)",
        settings.precision,
        choice.runtime,
        ", ".join(choice.providers),
        choice.reason,
    )

    def load(path: Path) -> Engine:
        return open_engine(path, choice, settings)

    return load


def load_models(settings: Settings, loader: EngineLoader | None = None) -> list[LoadedModel]:
    """Every model the settings name, loaded; ModelLoadError names the file that failed."""
    load = loader or default_engine_loader(settings)
    if settings.model_repository is None:
        engine = _load(load, settings.model_path)
        if not is_model_name(engine.spec.name):
            raise ModelLoadError(
                f"{settings.model_path}: its model name {engine.spec.name!r:.80} (metadata "
                f"'arch', else the file name) is not valid ({NAME_RULE})"
            )
        return [LoadedModel(engine.spec.name, 1, settings.model_path, engine)]
    if "model_path" in settings.model_fields_set:
        log.warning(
            "DENSENET_MODEL_PATH=%s is ignored: DENSENET_MODEL_REPOSITORY is set",
            settings.model_path,
        )
    found = discover(settings.model_repository)
    models = [LoadedModel(name, v, path, _load(load, path)) for name, v, path in found]
    names = {m.name for m in models}
    if settings.default_model is None and len(names) > 1:
        raise ModelLoadError(
            f"the repository serves {len(names)} models ({', '.join(sorted(names))}); "
            "set DENSENET_DEFAULT_MODEL to the one requests without a model get"
        )
    if settings.default_model is not None and settings.default_model not in names:
        raise ModelLoadError(
            f"DENSENET_DEFAULT_MODEL={settings.default_model} is not in the repository "
            f"(found {', '.join(sorted(names))})"
        )
    return models


def _load(load: EngineLoader, path: Path) -> Engine:
    try:
        return load(path)
    except ModelLoadError as exc:
        message = str(exc)
        raise ModelLoadError(message if str(path) in message else f"{path}: {message}") from exc


class ModelRepository:
    """The pipelines of every served model version, sharing one device and one pool.
    Model control (app/model_control.py) adds and retires versions while serving."""

    def __init__(self, models: list[LoadedModel], settings: Settings, metrics: Metrics) -> None:
        self.device = InferenceDevice()
        self.pool = FairPool(settings.resolved_preprocess_threads(), "preprocess")
        self.settings, self.metrics = settings, metrics
        self._queues: dict[str, QueueShare] = {}
        self._pipelines = {(m.name, m.version): self._pipeline(m) for m in models}
        self.default_name = settings.default_model or min(m.name for m in models)
        # Versions known to the repository but not serving: (state, reason), as the
        # repository index shows them (LOADING, or UNAVAILABLE after a failed load or an
        # unload).
        self.not_serving: dict[tuple[str, int], tuple[str, str]] = {}

    def _pipeline(self, model: LoadedModel) -> Pipeline:
        queue = self._queues.setdefault(model.name, QueueShare(self.settings.max_queue_size))
        return Pipeline(
            model.name,
            model.version,
            model.engine,
            self.settings,
            self.device,
            self.pool,
            self.metrics,
            queue,
        )

    async def add(self, model: LoadedModel) -> Pipeline | None:
        """Start and warm a new version, then let it take requests. Nothing sees it before
        it is warm; a failed warm-up leaves it out. Returns the copy of the same version it
        replaced, for the caller to retire."""
        pipeline = self._pipeline(model)
        pipeline.start()
        try:
            await pipeline.warm_up(self.device)
        except BaseException:
            pipeline.abort(ShuttingDown("the version failed to load"))
            await pipeline.close()
            pipeline.release(self.find_version(model.name, model.version))
            raise
        key = (model.name, model.version)
        replaced = self._pipelines.get(key)
        self._pipelines[key] = pipeline
        self.not_serving.pop(key, None)
        return replaced

    def forget_not_serving(self, gone: Callable[[tuple[str, int]], bool]) -> None:
        """Drop what the index says of versions no longer in the repository (`gone`)."""
        for key in [key for key in self.not_serving if gone(key)]:
            del self.not_serving[key]

    async def retire(self, pipeline: Pipeline, grace_s: float, reason: str) -> None:
        """Stop finding `pipeline`, let the requests that found it finish (within
        `grace_s`; then they are refused), stop its batcher and drop every reference the
        service keeps to it, so that its engine is freed."""
        key = (pipeline.name, pipeline.version)
        if self._pipelines.get(key) is pipeline:
            del self._pipelines[key]
            self.not_serving[key] = ("UNAVAILABLE", reason)
        pipeline.retired = True
        if not await pipeline.wait_unheld(grace_s):
            log.error("%s v%d: requests still running after %g s: refused", *key, grace_s)
            pipeline.abort(NotReady(f"model {key[0]} version {key[1]} was unloaded"))
        pipeline.stop_waiting()
        await pipeline.close()
        pipeline.release(self._pipelines.get(key))

    def __iter__(self) -> Iterator[Pipeline]:
        return iter(sorted(self._pipelines.values(), key=lambda p: (p.name, p.version)))

    async def release_memory(self) -> None:
        """After an unload: the runtime's free memory back to the system (one engine's
        call, on the inference device, between batches)."""
        serving = next(iter(self), None)
        if serving is not None:
            await self.device.call(serving.engine.release_memory)

    def find_version(self, name: str, version: int) -> Pipeline | None:
        return self._pipelines.get((name, version))

    def versions(self, name: str) -> list[int]:
        return sorted(v for n, v in self._pipelines if n == name)

    def find(self, name: str | None = None, version: int | None = None) -> Pipeline:
        """The pipeline for a request: the default model and the latest version unless named."""
        name = name or self.default_name
        versions = self.versions(name)
        if not versions:
            raise ModelNotFound(f"no model named '{name}'; GET /models lists the models")
        if version is None:
            version = versions[-1]
        pipeline = self._pipelines.get((name, version))
        if pipeline is None:
            raise ModelNotFound(
                f"model '{name}' has no version {version} (versions: "
                f"{', '.join(map(str, versions))})"
            )
        return pipeline

    @property
    def ready(self) -> bool:
        """Every version serving is warm (a failed load elsewhere does not count: what
        served before still serves), and something serves."""
        return bool(self._pipelines) and all(p.ready for p in self)

    @property
    def threads_busy(self) -> bool:
        """Inference or decoding is running on a worker thread right now."""
        return self.device.busy or self.pool.busy

    @property
    def unfinished(self) -> int:
        """Images decoding, queued or in a batch being run, in every model."""
        return sum(p.admitted + p.batcher.in_flight for p in self)

    def start(self) -> None:
        for pipeline in self:
            pipeline.start()

    async def warm_up(self) -> None:
        """Warm each model in turn; the first failure marks it and re-raises."""
        for pipeline in self:
            try:
                await pipeline.warm_up(self.device)
            except Exception:
                pipeline.warmup_failed = True
                raise

    def stop_waiting(self) -> None:
        for pipeline in self:
            pipeline.stop_waiting()

    async def close(self) -> None:
        """Finish every queued image, then stop the threads (never waits for a stuck one)."""
        try:
            for pipeline in self:
                await pipeline.close()
        finally:
            self.device.close()
            self.pool.close()

    def abort(self, error: ServiceError) -> None:
        for pipeline in self:
            pipeline.abort(error)
