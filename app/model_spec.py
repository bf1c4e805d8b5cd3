"""What a model file says about itself: labels, preprocessing recipe, input, precision.

Read from the ONNX graph's input/output signature and its `metadata_props` (the contract
docs/user-guide.md documents). Pure: the engine hands in what the runtime reports.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from app.errors import ModelLoadError

INTERPOLATIONS = ("nearest", "bilinear", "bicubic")
IMAGENET_DEFAULTS = {
    "resize_size": "256",
    "crop_size": "224",
    "interpolation": "bilinear",
    "mean": "[0.485, 0.456, 0.406]",
    "std": "[0.229, 0.224, 0.225]",
}


@dataclass(frozen=True)
class Recipe:
    """torchvision's eval transform: resize shorter side, center-crop, normalize."""

    resize_size: int
    crop_size: int
    interpolation: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def __post_init__(self) -> None:
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(f"interpolation must be one of {sorted(INTERPOLATIONS)}")
        if self.resize_size <= 0 or self.crop_size <= 0 or min(self.std) <= 0:
            raise ValueError("resize_size, crop_size and std must be positive")

    @cached_property
    def lookup(self) -> NDArray[np.float32]:
        """[3, 256]: the normalized float32 value of every 8-bit level in each channel.

        Computed with torchvision's operations in its order (x / 255, - mean, / std), so a
        table lookup gives bit-identical values three times faster than the arithmetic.
        """
        levels = np.arange(256, dtype=np.float32)[None, :] / np.float32(255)
        mean = np.asarray(self.mean, dtype=np.float32)[:, None]
        std = np.asarray(self.std, dtype=np.float32)[:, None]
        table: NDArray[np.float32] = (levels - mean) / std
        return table


@dataclass(frozen=True)
class ModelSpec:
    """What the service knows about one model, from its graph and metadata."""

    name: str
    arch: str | None
    weights: str
    weights_source: str | None
    precision: str
    labels: list[str]
    recipe: Recipe
    input_name: str
    fixed_batch: int | None
    output_name: str
    metadata_warnings: list[str] = field(default_factory=list)

    @property
    def num_classes(self) -> int:
        return len(self.labels)


class TensorInfo(Protocol):
    """The part of onnxruntime's NodeArg this module reads."""

    @property
    def name(self) -> str: ...
    @property
    def type(self) -> str: ...
    @property
    def shape(self) -> list[int | str | None]: ...


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
    if not labels:
        raise ModelLoadError("model 'labels' metadata is an empty list")
    if num_classes is not None and len(labels) != num_classes:
        raise ModelLoadError(f"model outputs {num_classes} classes but has {len(labels)} labels")
    return labels


def describe(
    inputs: list[TensorInfo], outputs: list[TensorInfo], meta: dict[str, str], fallback_name: str
) -> ModelSpec:
    """Check the graph is an NCHW float classifier and read its metadata."""
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
    warnings: list[str] = []
    recipe = _recipe(meta, warnings)
    for dim in (_dim(shape[2]), _dim(shape[3])):
        if dim is not None and dim != recipe.crop_size:
            raise ModelLoadError(
                f"model input is {shape[2:]} but the crop size is {recipe.crop_size}"
            )
    return ModelSpec(
        name=meta.get("arch") or fallback_name,
        arch=meta.get("arch"),
        weights=meta.get("weights", "unknown"),
        weights_source=meta.get("weights_source"),
        precision=meta.get("precision", "fp32"),
        labels=_labels(meta, _dim(out_shape[1]), warnings),
        recipe=recipe,
        input_name=inputs[0].name,
        fixed_batch=_dim(shape[0]),
        output_name=outputs[0].name,
        metadata_warnings=warnings,
    )
