"""The metadata contract between an exported model and the service.

Every value is a string in the ONNX file's ``metadata_props``; lists are JSON.
The service reads these with ONNX Runtime alone (``get_modelmeta().custom_metadata_map``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

LABELS = "labels"
RESIZE_SIZE = "resize_size"
CROP_SIZE = "crop_size"
INTERPOLATION = "interpolation"
MEAN = "mean"
STD = "std"
ARCH = "arch"
WEIGHTS = "weights"
WEIGHTS_SOURCE = "weights_source"
WEIGHTS_SHA256 = "weights_sha256"
EXPORTED_WITH = "exported_with"
PRECISION = "precision"  # "fp32" or "fp16": how the weights and activations are stored

INTERPOLATIONS = ("nearest", "bilinear", "bicubic")


@dataclass(frozen=True)
class Recipe:
    """torchvision's evaluation transform: resize shorter side, center crop, normalize."""

    resize_size: int
    crop_size: int
    interpolation: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def to_metadata(self) -> dict[str, str]:
        return {
            RESIZE_SIZE: str(self.resize_size),
            CROP_SIZE: str(self.crop_size),
            INTERPOLATION: self.interpolation,
            MEAN: json.dumps(list(self.mean)),
            STD: json.dumps(list(self.std)),
        }


IMAGENET_RECIPE = Recipe(256, 224, "bilinear", (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


def labels_to_metadata(labels: Sequence[str]) -> dict[str, str]:
    return {LABELS: json.dumps(list(labels), ensure_ascii=False)}


def read_labels_file(text: str) -> list[str]:
    """One class name per line; blank trailing lines are ignored, inner blank lines are not."""
    lines = text.splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    return [line.strip() for line in lines]
