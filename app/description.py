"""What one served model version is: the one description that the model routes of every
front, the start-up log and the `classifier_model_info` gauge read."""

from __future__ import annotations

from dataclasses import dataclass

from app.config import Settings
from app.engine import Engine
from app.model_spec import Recipe

GPU_PROVIDERS = ("CUDA", "Tensorrt")


@dataclass(frozen=True)
class ModelDescription:
    name: str
    version: int
    arch: str | None
    weights: str  # imagenet, checkpoint, random, unknown
    weights_source: str | None
    precision: str  # what the runtime computes in
    stored_precision: str  # what the file holds
    runtime: str  # onnxruntime or openvino
    providers: tuple[str, ...]
    input_name: str
    output_name: str
    recipe: Recipe
    labels: tuple[str, ...]
    max_batch_size: int
    max_batch_delay_ms: float
    max_queue_size: int  # shared by the model's versions
    jpeg_draft: bool
    warnings: tuple[str, ...]

    @property
    def crop_size(self) -> int:
        return self.recipe.crop_size

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    @property
    def on_gpu(self) -> bool:
        return any(p.startswith(GPU_PROVIDERS) for p in self.providers)

    @classmethod
    def of(
        cls,
        name: str,
        version: int,
        engine: Engine,
        settings: Settings,
        max_batch_size: int,
        warnings: list[str],
    ) -> ModelDescription:
        """A loaded model version as its engine, its file and the settings make it."""
        spec = engine.spec
        return cls(
            name=name,
            version=version,
            arch=spec.arch,
            weights=spec.weights,
            weights_source=spec.weights_source,
            precision=engine.precision,
            stored_precision=spec.precision,
            runtime=engine.runtime,
            providers=tuple(engine.providers),
            input_name=spec.input_name,
            output_name=spec.output_name,
            recipe=spec.recipe,
            labels=tuple(spec.labels),
            max_batch_size=max_batch_size,
            max_batch_delay_ms=settings.max_batch_delay_ms,
            max_queue_size=settings.max_queue_size,
            jpeg_draft=settings.jpeg_draft,
            warnings=tuple(warnings),
        )
