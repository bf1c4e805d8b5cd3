"""Build a torchvision DenseNet and load its weights: ImageNet, seeded random, or a checkpoint."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torchvision import models as tvm

from model_export.errors import ExportError
from model_export.metadata import Recipe

# torchvision's builders and the weights enum whose recipe and class names they use.
_ARCHS: dict[str, tuple[Callable[..., torch.nn.Module], Any]] = {
    "densenet121": (tvm.densenet121, tvm.DenseNet121_Weights.IMAGENET1K_V1),
    "densenet161": (tvm.densenet161, tvm.DenseNet161_Weights.IMAGENET1K_V1),
    "densenet169": (tvm.densenet169, tvm.DenseNet169_Weights.IMAGENET1K_V1),
    "densenet201": (tvm.densenet201, tvm.DenseNet201_Weights.IMAGENET1K_V1),
}
# A DenseNet small enough for tests and smoke runs (random weights or checkpoints only).
TINY_ARCH = "densenet-tiny"
TINY_CONFIG: dict[str, Any] = {
    "growth_rate": 8,
    "block_config": (2, 2, 2, 2),
    "num_init_features": 16,
    "bn_size": 2,
}
ARCHS = (*_ARCHS, TINY_ARCH)

# Old DenseNet checkpoints (including torchvision's own ImageNet files) name layers
# 'norm.1' where the current module says 'norm1'; torchvision renames them on load.
_LEGACY_KEY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$"
)


@dataclass
class LoadedModel:
    module: torch.nn.Module
    arch: str
    weights: str  # "imagenet" | "random" | "checkpoint"
    weights_source: str
    weights_sha256: str | None
    recipe: Recipe
    labels: list[str]


def _reference_weights(arch: str) -> Any:
    """The ImageNet weights entry whose recipe and categories an arch is served with."""
    return _ARCHS["densenet121" if arch == TINY_ARCH else arch][1]


def recipe_from_weights(weights: Any) -> Recipe:
    """Read the preprocessing recipe from torchvision's own transform, not by hand."""
    transform = weights.transforms()
    mean, std = transform.mean, transform.std
    return Recipe(
        resize_size=int(transform.resize_size[0]),
        crop_size=int(transform.crop_size[0]),
        interpolation=str(transform.interpolation.value),
        mean=(float(mean[0]), float(mean[1]), float(mean[2])),
        std=(float(std[0]), float(std[1]), float(std[2])),
    )


def build(arch: str, num_classes: int = 1000) -> torch.nn.Module:
    module: torch.nn.Module
    if arch == TINY_ARCH:
        module = tvm.DenseNet(num_classes=num_classes, **TINY_CONFIG)
        return module
    if arch not in _ARCHS:
        raise ExportError(f"unknown arch {arch!r}; choose one of {', '.join(ARCHS)}")
    module = _ARCHS[arch][0](weights=None, num_classes=num_classes)
    return module


def fix_legacy_keys(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    fixed = {}
    for key, value in state_dict.items():
        match = _LEGACY_KEY.match(key)
        fixed[match.group(1) + match.group(2) if match else key] = value
    return fixed


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def load_random(arch: str, seed: int) -> LoadedModel:
    torch.manual_seed(seed)
    reference = _reference_weights(arch)
    return LoadedModel(
        module=build(arch).eval(),
        arch=arch,
        weights="random",
        weights_source=f"seed={seed}",
        weights_sha256=None,
        recipe=recipe_from_weights(reference),
        labels=list(reference.meta["categories"]),
    )


def load_imagenet(arch: str) -> LoadedModel:
    """Download (or reuse from torch hub's cache) torchvision's ImageNet weights."""
    if arch == TINY_ARCH:
        raise ExportError(f"{TINY_ARCH} has no pretrained weights; use --weights random")
    weights = _ARCHS[arch][1]
    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
    try:
        state_dict = weights.get_state_dict(progress=True, check_hash=True)
    except Exception as exc:
        raise ExportError(
            f"could not download the ImageNet weights for {arch} from {weights.url}: {exc}\n"
            "To export offline: copy that file to "
            f"{cached} (torch hub's cache; set TORCH_HOME to move it), "
            "or pass --checkpoint PATH to a local state_dict, "
            "or --weights random --seed N for an untrained model."
        ) from exc
    module = build(arch)
    module.load_state_dict(fix_legacy_keys(state_dict))
    return LoadedModel(
        module=module.eval(),
        arch=arch,
        weights="imagenet",
        weights_source=f"{weights} ({weights.url})",
        weights_sha256=sha256_of(cached) if cached.is_file() else None,
        recipe=recipe_from_weights(weights),
        labels=list(weights.meta["categories"]),
    )


def load_checkpoint(arch: str, path: Path, labels: list[str] | None) -> LoadedModel:
    """Load a torchvision-format state_dict (optionally wrapped as {'state_dict': ...})."""
    if not path.is_file():
        raise ExportError(f"checkpoint {path} does not exist")
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ExportError(f"checkpoint {path} is not a readable PyTorch file: {exc}") from exc
    if isinstance(loaded, dict) and isinstance(loaded.get("state_dict"), dict):
        loaded = loaded["state_dict"]
    if not isinstance(loaded, dict) or "classifier.weight" not in loaded:
        raise ExportError(f"checkpoint {path} is not a DenseNet state_dict (no classifier.weight)")
    state_dict = fix_legacy_keys({k.removeprefix("module."): v for k, v in loaded.items()})
    num_classes = int(state_dict["classifier.weight"].shape[0])
    reference = _reference_weights(arch)
    if labels is None:
        if num_classes != len(reference.meta["categories"]):
            raise ExportError(
                f"checkpoint has {num_classes} classes, not ImageNet's 1000: pass --labels FILE"
            )
        labels = list(reference.meta["categories"])
    if len(labels) != num_classes:
        raise ExportError(f"--labels has {len(labels)} names but the checkpoint {num_classes}")
    module = build(arch, num_classes)
    try:
        module.load_state_dict(state_dict)
    except RuntimeError as exc:
        raise ExportError(f"checkpoint {path} does not fit {arch}: {exc}") from exc
    return LoadedModel(
        module=module.eval(),
        arch=arch,
        weights="checkpoint",
        weights_source=path.name,
        weights_sha256=sha256_of(path),
        recipe=recipe_from_weights(reference),
        labels=labels,
    )
