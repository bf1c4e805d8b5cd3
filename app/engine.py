"""ONNX Runtime session: provider choice, model validation, metadata, warm-up, run(batch)."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnxruntime as ort
from numpy.typing import NDArray

from app.preprocess import Recipe

log = logging.getLogger(__name__)

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
IMAGENET_DEFAULTS = {
    "resize_size": "256",
    "crop_size": "224",
    "interpolation": "bilinear",
    "mean": "[0.485, 0.456, 0.406]",
    "std": "[0.229, 0.224, 0.225]",
}


class ModelLoadError(Exception):
    """The model cannot be served; start-up stops with this message."""


@dataclass(frozen=True)
class ModelSpec:
    """What the service knows about the model, from its graph and metadata."""

    name: str
    arch: str | None
    weights: str
    weights_source: str | None
    labels: list[str]
    recipe: Recipe
    input_name: str
    fixed_batch: int | None
    metadata_warnings: list[str] = field(default_factory=list)

    @property
    def num_classes(self) -> int:
        return len(self.labels)


def resolve_providers(requested: list[str] | None) -> list[str]:
    available = ort.get_available_providers()
    if requested is None:
        return [CUDA, CPU] if CUDA in available else [CPU]
    missing = [p for p in requested if p not in available]
    if missing:
        raise ModelLoadError(
            f"execution provider(s) {missing} are not available; "
            f"this onnxruntime offers {available}"
        )
    return requested


def _dim(value: object) -> int | None:
    return value if isinstance(value, int) and value > 0 else None


def _recipe(meta: dict[str, str], warnings: list[str]) -> Recipe:
    missing = [key for key in IMAGENET_DEFAULTS if key not in meta]
    if missing:
        warnings.append(f"model metadata lacks {missing}; using ImageNet defaults for them")
    values = {**IMAGENET_DEFAULTS, **meta}
    try:
        mean, std = json.loads(values["mean"]), json.loads(values["std"])
        return Recipe(
            resize_size=int(values["resize_size"]),
            crop_size=int(values["crop_size"]),
            interpolation=values["interpolation"],
            mean=(float(mean[0]), float(mean[1]), float(mean[2])),
            std=(float(std[0]), float(std[1]), float(std[2])),
        )
    except (ValueError, TypeError, IndexError, KeyError) as exc:
        raise ModelLoadError(f"model metadata has an invalid preprocessing recipe: {exc}") from exc


def _labels(meta: dict[str, str], num_classes: int | None, warnings: list[str]) -> list[str]:
    if "labels" not in meta:
        if num_classes is None:
            raise ModelLoadError("model has neither a static class count nor 'labels' metadata")
        warnings.append("model metadata has no labels; classes are named by index")
        return [f"class_{i}" for i in range(num_classes)]
    try:
        labels = json.loads(meta["labels"])
    except json.JSONDecodeError as exc:
        raise ModelLoadError(f"model 'labels' metadata is not a JSON list: {exc}") from exc
    if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
        raise ModelLoadError("model 'labels' metadata is not a JSON list of strings")
    if num_classes is not None and len(labels) != num_classes:
        raise ModelLoadError(f"model outputs {num_classes} classes but has {len(labels)} labels")
    return labels


def describe(session: ort.InferenceSession, path: Path) -> ModelSpec:
    """Check the graph is an NCHW float classifier and read its metadata."""
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if len(inputs) != 1:
        raise ModelLoadError(f"expected one image input, found {len(inputs)}")
    shape, out_shape = inputs[0].shape, outputs[0].shape
    if inputs[0].type != "tensor(float)" or len(shape) != 4 or _dim(shape[1]) not in (3, None):
        raise ModelLoadError(f"expected a float32 input [N,3,H,W], found {inputs[0].type} {shape}")
    if outputs[0].type != "tensor(float)" or len(out_shape) != 2:
        raise ModelLoadError(f"expected a float32 output [N,classes], found {out_shape}")
    if _dim(shape[0]) not in (None, 1):
        raise ModelLoadError(
            f"model has a fixed batch size {shape[0]}; export it with a dynamic one"
        )
    meta = dict(session.get_modelmeta().custom_metadata_map)
    warnings: list[str] = []
    recipe = _recipe(meta, warnings)
    for dim in (_dim(shape[2]), _dim(shape[3])):
        if dim is not None and dim != recipe.crop_size:
            raise ModelLoadError(
                f"model input is {shape[2:]} but the crop size is {recipe.crop_size}"
            )
    return ModelSpec(
        name=meta.get("arch") or path.stem,
        arch=meta.get("arch"),
        weights=meta.get("weights", "unknown"),
        weights_source=meta.get("weights_source"),
        labels=_labels(meta, _dim(out_shape[1]), warnings),
        recipe=recipe,
        input_name=inputs[0].name,
        fixed_batch=_dim(shape[0]),
        metadata_warnings=warnings,
    )


class Engine:
    """One ONNX Runtime session. `run` is synchronous; callers serialize it."""

    def __init__(self, path: Path, providers: list[str] | None, intra_op_threads: int) -> None:
        if not path.is_file():
            raise ModelLoadError(f"model file {path} does not exist")
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.intra_op_num_threads = intra_op_threads
        options.inter_op_num_threads = 1
        chosen = resolve_providers(providers)
        try:
            self.session = ort.InferenceSession(str(path), options, providers=chosen)
        except Exception as exc:
            raise ModelLoadError(f"cannot load {path} as an ONNX model: {exc}") from exc
        in_use = self.session.get_providers()
        if providers is not None and [p for p in providers if p not in in_use]:
            raise ModelLoadError(f"requested providers {providers} but ONNX Runtime uses {in_use}")
        self.spec = describe(self.session, path)
        self.providers: list[str] = list(in_use)

    def run(self, batch: NDArray[np.float32]) -> NDArray[np.float32]:
        """Logits [N, classes] for a batch [N, 3, H, W]."""
        (logits,) = self.session.run(None, {self.spec.input_name: batch})[:1]
        return np.asarray(logits, dtype=np.float32)

    def warm_up(self, runs: int, batch_size: int) -> None:
        """Run zeros through the model so the first requests do not pay for allocation.

        On CUDA every batch size is warmed: cuDNN picks its algorithms per input shape.
        """
        crop = self.spec.recipe.crop_size
        largest = min(batch_size, self.spec.fixed_batch or batch_size)
        sizes = range(1, largest + 1) if CUDA in self.providers else sorted({1, largest})
        for size in sizes:
            batch = np.zeros((size, 3, crop, crop), dtype=np.float32)
            for _ in range(runs):
                self.run(batch)
