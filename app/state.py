"""What a running app holds: settings, metrics, the engine and batcher once loaded."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from fastapi import Request

from app.batching import DynamicBatcher
from app.config import Settings
from app.engine import Engine
from app.errors import NotReady, ShuttingDown
from app.metrics import Metrics


@dataclass
class AppState:
    settings: Settings
    metrics: Metrics
    engine: Engine | None = None
    batcher: DynamicBatcher | None = None
    preprocess_pool: ThreadPoolExecutor | None = None
    warmed_up: bool = False
    draining: bool = False
    active_requests: int = 0
    preprocessing: int = 0  # images handed to the preprocess pool and not done yet
    warnings: list[str] = field(default_factory=list)  # added to every classification
    warmup_error: str | None = None
    on_fatal: Callable[[], None] | None = None  # set by `python -m app`: stop the process

    @property
    def ready(self) -> bool:
        return self.engine is not None and self.warmed_up and not self.draining

    def require_ready(
        self, admit: bool = True
    ) -> tuple[Engine, DynamicBatcher, ThreadPoolExecutor]:
        """The loaded parts, or the 503 a client should get right now.

        `admit=False` is for work of a request admitted before a drain began: it finishes.
        """
        if admit and self.draining:
            raise ShuttingDown("the service is shutting down; retry on another instance")
        if self.warmup_error:
            raise NotReady(f"the model cannot be served ({self.warmup_error}); see the log")
        if not (self.warmed_up and self.engine and self.batcher and self.preprocess_pool):
            raise NotReady("the model is still loading; retry shortly")
        return self.engine, self.batcher, self.preprocess_pool

    def preprocessing_done(self) -> None:
        self.preprocessing -= 1

    def set_ready_gauge(self) -> None:
        self.metrics.ready.set(1 if self.ready else 0)


def get_state(request: Request) -> AppState:
    state: AppState = request.app.state.service
    return state
