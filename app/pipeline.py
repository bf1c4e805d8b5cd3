"""One served model version: its engine, recipe, batcher, admission, warm-up and labels.

`classify(image bytes)` runs the whole path for one image: admission against the queue
limit -> preprocessing on the shared thread pool -> the model's batcher -> top-k. Knows
nothing of HTTP; the web layer picks a pipeline and renders what it returns.
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
import logging
import time
from collections.abc import Awaitable, Iterator
from contextlib import contextmanager

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from app.batching import DynamicBatcher, InferenceDevice
from app.config import Settings
from app.description import ModelDescription
from app.engine import Engine
from app.engine import warm_up as warm_up_engine
from app.errors import (
    InvalidImage,
    InvalidParameter,
    NonFiniteOutput,
    NotReady,
    Overloaded,
    ServiceError,
)
from app.fair_pool import FairPool
from app.metrics import Metrics
from app.postprocess import softmax, top_k
from app.predictions import Classified, Inferred, Prediction
from app.preprocess import preprocess
from app.statistics import ModelStatistics

log = logging.getLogger(__name__)

RANDOM_WEIGHTS_WARNING = (
    "the model has random, untrained weights: its predictions are meaningless "
    "(export it with --weights imagenet)"
)


class QueueShare:
    """One model's queue limit, shared by all its versions: naming several versions must
    not multiply what a client can have waiting."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.members: list[Pipeline] = []

    @property
    def admitted(self) -> int:
        return sum(pipeline.admitted for pipeline in self.members)


class Pipeline:
    """Everything about one served model version; one per (name, version)."""

    def __init__(
        self,
        name: str,
        version: int,
        engine: Engine,
        settings: Settings,
        device: InferenceDevice,
        preprocess_pool: FairPool,
        metrics: Metrics,
        queue: QueueShare | None = None,
    ) -> None:
        self.name, self.version, self.engine, self.spec = name, version, engine, engine.spec
        self.settings = settings
        self._pool = preprocess_pool
        self._metrics = metrics.for_model(name, version)
        self.warnings = [RANDOM_WEIGHTS_WARNING] if self.spec.weights == "random" else []
        self.warnings.extend(self.spec.metadata_warnings)
        self.max_batch_size = 1 if self.spec.fixed_batch == 1 else settings.max_batch_size
        self.statistics = ModelStatistics()
        self.batcher = DynamicBatcher(
            engine.run,
            device,
            self._metrics,
            max_batch_size=self.max_batch_size,
            max_batch_delay_s=settings.max_batch_delay_ms / 1e3,
            max_queue_size=settings.max_queue_size,
            on_batch=self.statistics.record_batch,
        )
        self._preprocessing = 0  # images handed to the pool and not decoded yet
        self._queue = queue or QueueShare(settings.max_queue_size)
        self._queue.members.append(self)
        self.warmed_up = False
        self.warmup_failed = False
        self._metrics.queue_limit.set(settings.max_queue_size)
        self.claim_series()
        self._description = ModelDescription.of(
            name, version, engine, settings, self.max_batch_size, self.warnings
        )
        about = self._description
        self._all_metrics = metrics
        self._info = (about.arch or "", about.weights, about.precision, ",".join(about.providers))
        metrics.model_info.labels(about.name, str(about.version), *self._info).set(1)
        self.retired = False  # unloaded: no longer found by requests
        self._holders = 0  # requests that found this version and are not answered yet
        self._unheld = asyncio.Event()
        self._unheld.set()

    def claim_series(self) -> None:
        """Point this version's gauges at this pipeline (a new copy of the same version
        shares its series; a failed one hands them back to the copy still serving)."""
        self._metrics.admitted_images.set_function(lambda: self.admitted)
        self._metrics.ready.set_function(lambda: 1 if self.ready else 0)

    def describe(self) -> ModelDescription:
        """What this model version is (fixed once loaded)."""
        return self._description

    @property
    def admitted(self) -> int:
        """Images being decoded or waiting for inference: what max_queue_size limits."""
        return self._preprocessing + self.batcher.queue_depth

    @property
    def ready(self) -> bool:
        return self.warmed_up and not self.batcher.crashed

    def state(self) -> tuple[str, str]:
        """READY, LOADING or UNAVAILABLE (Triton's words), and why when not READY."""
        try:
            self.check_ready()
        except NotReady as exc:
            return ("LOADING" if self.loading else "UNAVAILABLE"), str(exc)
        return "READY", ""

    @property
    def loading(self) -> bool:
        return not (self.warmed_up or self.warmup_failed or self.batcher.crashed)

    def check_ready(self) -> None:
        if self.batcher.crashed:
            raise NotReady(
                f"model {self.name} version {self.version} stopped serving (its batch worker "
                "ended); see the server log"
            )
        if self.warmup_failed:
            raise NotReady(
                f"model {self.name} version {self.version} failed its warm-up run and "
                "cannot be served; see the server log"
            )
        if not self.warmed_up:
            raise NotReady(f"model {self.name} is still loading; retry shortly")

    def top_k(self, requested: int | None, what: str = "top_k") -> int:
        """The client's K (`what` names it as the client wrote it), checked against
        DENSENET_MAX_TOP_K and the class count; or the default. The one top-k rule of every
        front."""
        limit = min(self.settings.max_top_k, self.spec.num_classes)
        if requested is None:
            return min(self.settings.default_top_k, limit)
        if not 1 <= requested <= limit:
            raise InvalidParameter(f"{what} must be between 1 and {limit}, not {requested}")
        return requested

    def start(self) -> None:
        self.batcher.start()

    async def warm_up(self, device: InferenceDevice) -> None:
        """Warm every preprocessing thread (decoders load lazily) and the model."""
        sample = _sample_jpeg()
        recipe = self.spec.recipe
        await asyncio.gather(
            *(
                self._pool.submit(self.name, preprocess, sample, recipe, 10**6)
                for _ in range(self._pool.threads)
            )
        )
        runs, size = self.settings.warmup_runs, self.max_batch_size
        await device.call(warm_up_engine, self.engine, runs, size)
        self.warmed_up = True

    def _admit(self) -> None:
        # Images waiting for a preprocessing thread count against the queue limit too: else,
        # when decoding is the bottleneck, they pile up (holding their uploads) without a 503.
        if self._queue.admitted >= self._queue.limit:
            raise Overloaded(
                f"model {self.name} has {self._queue.limit} images waiting (its queue "
                "limit, all versions together); retry shortly"
            )

    async def infer_image(self, data: bytes, request_id: str | None = None) -> Inferred:
        """The model's output row for one encoded image, preprocessed by its recipe."""
        return await self._counted(self._infer_image(data, request_id))

    async def infer_tensor(
        self, tensor: NDArray[np.float32], request_id: str | None = None
    ) -> Inferred:
        """The model's output row for one input tensor [3, H, W], sent as it is."""
        return await self._counted(self._infer_tensor(tensor, request_id, admit=True))

    async def _counted(self, work: Awaitable[Inferred]) -> Inferred:
        """`work`, recorded in the statistics (a request abandoned by its client is not)."""
        started = time.perf_counter()
        try:
            inferred = await work
        except Exception:
            self.statistics.record_failure(time.perf_counter() - started)
            raise
        total_s = time.perf_counter() - started
        self.statistics.record_success(
            total_s, inferred.queue_s, inferred.preprocess_s, inferred.inference_s
        )
        return inferred

    async def _infer_image(self, data: bytes, request_id: str | None) -> Inferred:
        if not data:
            raise InvalidImage("the file is empty")
        self._admit()
        started = time.perf_counter()
        tensor = await self._preprocess(data)
        preprocess_s = time.perf_counter() - started
        self._metrics.preprocess_seconds.observe(preprocess_s)
        inferred = await self._infer_tensor(tensor, request_id, admit=False)
        return dataclasses.replace(inferred, preprocess_s=preprocess_s)

    async def _infer_tensor(
        self, tensor: NDArray[np.float32], request_id: str | None, admit: bool
    ) -> Inferred:
        if admit:  # an image was admitted before its decoding
            self._admit()
        result = await self.batcher.submit(tensor, request_id)
        if not np.isfinite(result.output).all():
            raise NonFiniteOutput(
                "the model's output for this input is not finite (NaN or infinity); the "
                "input is outside what the model computes (e.g. values near the float32 limit)"
            )
        self._metrics.images.inc()
        return Inferred(result.output, result.queue_wait_s, 0.0, result.inference_s)

    async def classify(self, data: bytes, k: int, request_id: str | None = None) -> Classified:
        """Top-k of one encoded image; raises a ServiceError the client should see."""
        inferred = await self.infer_image(data, request_id)
        labels = self.spec.labels
        ranked = top_k(softmax(inferred.output), k)
        return Classified(
            predictions=[Prediction(i, labels[i], p) for i, p in ranked],
            queue_s=inferred.queue_s,
            preprocess_s=inferred.preprocess_s,
            inference_s=inferred.inference_s,
        )

    async def _preprocess(self, data: bytes) -> NDArray[np.float32]:
        settings = self.settings
        # Counted on the pool's work item, not the awaiting task: a cancelled request's
        # decode still occupies a thread (and its upload) until it finishes. One lane per
        # model name, so that its versions together get one share of the threads.
        decoded = self._pool.submit(
            self.name,
            preprocess,
            data,
            self.spec.recipe,
            settings.max_image_pixels,
            settings.jpeg_draft,
            on_done=self._decoded,
        )
        self._preprocessing += 1  # after submit: a refused item never leaves the pool
        return await decoded

    def _decoded(self) -> None:
        self._preprocessing -= 1

    @contextmanager
    def hold(self) -> Iterator[None]:
        """Count a request that found this version until it is answered: an unload waits
        for them (app/model_control.py)."""
        self._holders += 1
        self._unheld.clear()
        try:
            yield
        finally:
            self._holders -= 1
            if self._holders == 0:
                self._unheld.set()

    async def wait_unheld(self, timeout_s: float) -> bool:
        """Until no request holds this version (True), or `timeout_s` passed (False)."""
        try:
            async with asyncio.timeout(timeout_s):
                await self._unheld.wait()
        except TimeoutError:
            return False
        return True

    def release(self, serving: Pipeline | None = None) -> None:
        """After close: leave the queue share and drop the series, which keep this version
        (and through them its engine) alive; when another copy of the same version is
        `serving`, the series are its own now and stay."""
        self._queue.members.remove(self)
        if serving is None:
            self._all_metrics.forget_model(self.name, self.version, self._info)
            return
        serving.claim_series()
        if serving._info != self._info:
            labels = (self.name, str(self.version), *self._info)
            self._all_metrics.model_info.remove(*labels)

    def stop_waiting(self) -> None:
        self.batcher.stop_waiting()

    async def close(self) -> None:
        await self.batcher.close()

    def abort(self, error: ServiceError) -> None:
        self.batcher.abort(error)


def _sample_jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (640, 480), (120, 140, 160)).save(buffer, format="JPEG")
    return buffer.getvalue()
