"""The one call path every protocol front uses, and every rule a request must pass.

Transport-free: a front (v1 REST, v2 REST, gRPC) parses its request, calls the data
plane, and renders what comes back or the ServiceError it raises. Here, and only here:
finding the model and version (names and versions as `app.names` writes them), readiness,
the drain, the request deadline, and the limits a request is held to. The front supplies
one thing it alone can see: an awaitable that completes when its client goes away.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

from app import __version__
from app.budget import UploadBudget
from app.config import Settings
from app.dataplane import inference
from app.dataplane.oip import DecodeLimits
from app.draining import Drain
from app.errors import (
    ClientDisconnected,
    Forbidden,
    ModelControlDisabled,
    ModelNotFound,
    NotReady,
    ShuttingDown,
    Timeout,
)
from app.metrics import Metrics
from app.model_control import ModelControl
from app.names import is_model_name, parse_version
from app.pipeline import Pipeline
from app.repository import ModelRepository

T = TypeVar("T")


@dataclass
class DataPlane:
    settings: Settings
    metrics: Metrics
    drain: Drain = field(default_factory=Drain)
    repository: ModelRepository | None = None
    control: ModelControl | None = None  # set by the lifespan unless DENSENET_MODEL_CONTROL=none
    on_fatal: Callable[[], None] | None = None  # set by `python -m app`: stop the process

    def __post_init__(self) -> None:
        self.uploads = UploadBudget(self.settings.max_inflight_upload_bytes)
        self.metrics.upload_bytes.set_function(lambda: self.uploads.held)
        self.metrics.requests_in_progress.set_function(lambda: self.drain.active)
        self.metrics.ready.set_function(lambda: 1 if self.ready else 0)

    # --- what is served ------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        return self.repository is not None and self.repository.ready and not self.drain.draining

    def models(self) -> ModelRepository:
        """The loaded models, or 503 while they load."""
        if self.repository is None:
            raise NotReady("the models are still loading; retry shortly")
        return self.repository

    def check_ready(self) -> None:
        """Readiness: raise (503) while loading, after a failed warm-up, or while draining."""
        self.drain.check_admit()
        for pipeline in self.models():
            pipeline.check_ready()

    def find(self, name: str | None = None, version: str | int | None = None) -> Pipeline:
        """A loaded model version, ready or not (metadata asks of it): the default model and
        its latest version unless named. A name or version that could never have been
        loaded is 404 before anything else is looked at."""
        if name is not None and not is_model_name(name):
            raise ModelNotFound(f"no model named {name!r:.80}")
        number = parse_version(version) if isinstance(version, str) else version
        if version is not None and (number is None or number < 1):
            raise ModelNotFound(f"model '{name}' has no version {str(version)!r:.40}")
        return self.models().find(name, number)

    def admit(self, name: str | None = None, version: str | int | None = None) -> Pipeline:
        """The model version a request asks for, refused (before its body is read) while
        the service drains or the model is not ready."""
        self.drain.check_admit()
        pipeline = self.find(name, version)
        pipeline.check_ready()
        return pipeline

    def decode_limits(self, pipeline: Pipeline) -> DecodeLimits:
        """What decoding an Open Inference Protocol request for `pipeline` may cost."""
        about = pipeline.describe()
        body_bytes = self.settings.max_v2_body_bytes
        return DecodeLimits.for_model(body_bytes, about.max_batch_size, about.crop_size)

    # --- what the protocol's documents say, for every front ----------------------------

    def server_metadata(self) -> dict[str, Any]:
        return {
            "name": inference.SERVER_NAME,
            "version": __version__,
            "extensions": list(inference.EXTENSIONS)
            + (["model_repository"] if self.settings.model_control == "explicit" else []),
        }

    @property
    def lists_image_input(self) -> bool:
        """Whether metadata and configuration list the `image` input beside the tensor."""
        return self.settings.v2_metadata_inputs == "both"

    def model_metadata(self, name: str | None, version: str | None = None) -> dict[str, Any]:
        """A model's metadata (the default model's without a name): every version it has,
        or just the one named."""
        pipeline = self.find(name, version)
        versions = [pipeline.version] if version else self.models().versions(pipeline.name)
        return inference.model_metadata(pipeline.describe(), versions, self.lists_image_input)

    def model_config(self, name: str | None, version: str | None = None) -> dict[str, Any]:
        return inference.model_config(self.find(name, version).describe(), self.lists_image_input)

    def model_statistics(
        self, name: str | None = None, version: str | None = None
    ) -> dict[str, Any]:
        """Statistics of every model version (no name), of one model's versions, or of one
        version."""
        if name is None:
            return inference.model_statistics(list(self.models()))
        if version is not None:
            return inference.model_statistics([self.find(name, version)])
        latest, models = self.find(name), self.models()
        return inference.model_statistics(
            [models.find(name, v) for v in models.versions(latest.name)]
        )

    def repository_index(self, ready_only: bool) -> list[dict[str, str]]:
        models = self.models()
        return inference.repository_index(
            list(models), ready_only, self.drain.draining, models.not_serving
        )

    # --- running a request ---------------------------------------------------------------

    @contextmanager
    def track(self, pipeline: Pipeline | None = None) -> Iterator[None]:
        """Count one accepted request until it is answered: a drain waits for it, and so
        does an unload of the model version it found (`pipeline`)."""
        with self.drain.track():
            if pipeline is None:
                yield
                return
            with pipeline.hold():
                yield

    # --- model control -------------------------------------------------------------------

    def _control(self) -> ModelControl:
        self.drain.check_admit()
        mode = self.settings.model_control
        if mode != "explicit" or self.control is None:
            raise ModelControlDisabled(
                f"models are not loaded or unloaded by request here (DENSENET_MODEL_CONTROL "
                f"is '{mode}'; 'explicit' allows it)"
            )
        if self.settings.api_key is None and not self.settings.model_control_open:
            raise Forbidden(
                "model control needs DENSENET_API_KEY (or DENSENET_MODEL_CONTROL_OPEN=true)"
            )
        return self.control

    async def load_model(self, name: str) -> None:
        """Load (or reload) model `name` from the repository; returns once it serves. A
        drain waits for it, as for a request."""
        control = self._control()
        with self.drain.track():
            await control.load(name)

    async def unload_model(self, name: str) -> None:
        """Unload every version of model `name`; returns once they are freed."""
        control = self._control()
        with self.drain.track():
            await control.unload(name)

    async def run(
        self,
        work: Awaitable[T],
        client_gone: Awaitable[object],
        client_deadline_s: float | None = None,
    ) -> T:
        """`work` within the request deadline (or the client's own, when it is sooner);
        abandoned when the client goes away or the service is stopped outright. Everything
        a request costs after its body arrived (decoding included) belongs inside `work`."""
        task = asyncio.ensure_future(work)
        watchers = {
            asyncio.ensure_future(client_gone): ClientDisconnected("client closed the connection"),
            asyncio.ensure_future(self.drain.aborted.wait()): ShuttingDown(
                "the service was stopped before this request finished"
            ),
        }
        timeout = self.settings.request_timeout_s
        whose = "the request timeout"
        if client_deadline_s is not None and client_deadline_s < timeout:
            timeout, whose = max(0.0, client_deadline_s), "the client's deadline"
        try:
            done, _ = await asyncio.wait(
                {task, *watchers}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
            if task in done:
                return task.result()
            for watcher, error in watchers.items():
                if watcher in done:
                    raise error
            raise Timeout(f"not answered within {whose} ({timeout:g} s)")
        finally:
            for pending in (task, *watchers):
                pending.cancel()
