"""What a running app holds: settings, metrics, the drain, and the models once loaded."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from fastapi import Request

from app.config import Settings
from app.draining import Drain
from app.errors import NotReady
from app.metrics import Metrics
from app.repository import ModelRepository


@dataclass
class Service:
    settings: Settings
    metrics: Metrics
    drain: Drain = field(default_factory=Drain)
    repository: ModelRepository | None = None
    on_fatal: Callable[[], None] | None = None  # set by `python -m app`: stop the process

    def __post_init__(self) -> None:
        self.metrics.requests_in_progress.set_function(lambda: self.drain.active)
        self.metrics.ready.set_function(lambda: 1 if self.ready else 0)

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


def get_service(request: Request) -> Service:
    service: Service = request.app.state.service
    return service
