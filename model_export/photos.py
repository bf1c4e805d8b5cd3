"""Inputs for agreement reports: real photos, varied, preprocessed by a model's own recipe.

The bundled set needs no network: the photographs that scikit-image and matplotlib ship
(scikit-image's synthetic test patterns and diagrams are left out). Each input is one
photo with a seeded variation: a random crop (30-100% of the area, aspect 3:4 to 4:3), a
horizontal flip half of the time, and a rescale by 0.5-1.5x before the recipe's own resize,
so that the same scene reaches the model at different scales and positions.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as F

from model_export import metadata as md
from model_export.errors import ExportError

SKIMAGE_PHOTOS = (
    "astronaut.png",
    "brick.png",
    "camera.png",
    "chelsea.png",
    "coffee.png",
    "grass.png",
    "gravel.png",
    "hubble_deep_field.jpg",
    "ihc.png",
    "motorcycle_left.png",
    "retina.jpg",
    "rocket.jpg",
)
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


def bundled_photo_paths() -> list[Path]:
    """The photos shipped by scikit-image and matplotlib that are installed here."""
    paths: list[Path] = []
    try:
        import skimage

        data = Path(skimage.__file__).parent / "data"
        paths += [data / name for name in SKIMAGE_PHOTOS if (data / name).is_file()]
    except ImportError:
        pass
    try:
        import matplotlib

        hopper = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
        paths += [hopper] if hopper.is_file() else []
    except ImportError:
        pass
    if not paths:
        raise ExportError(
            "no photos to compare on: they come with scikit-image or matplotlib, and neither "
            f"is installed here; install one ({sys.executable} -m pip install "
            "scikit-image) or pass --images DIR, a folder of photos"
        )
    return paths


def directory_photo_paths(directory: Path) -> list[Path]:
    if not directory.is_dir():
        raise ExportError(f"--images {directory} is not a directory")
    paths = sorted(p for p in directory.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise ExportError(f"--images {directory} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    return paths


def load_rgb(path: Path) -> Image.Image:
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (OSError, ValueError) as exc:
        raise ExportError(f"cannot read image {path}: {exc}") from exc


def vary(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """One seeded crop, flip and rescale of a photo."""
    w, h = image.size
    area = rng.uniform(0.3, 1.0) * w * h
    aspect = float(np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3))))
    crop_w = min(w, max(8, round(np.sqrt(area * aspect))))
    crop_h = min(h, max(8, round(np.sqrt(area / aspect))))
    left, top = int(rng.integers(0, w - crop_w + 1)), int(rng.integers(0, h - crop_h + 1))
    varied = image.crop((left, top, left + crop_w, top + crop_h))
    if rng.random() < 0.5:
        varied = varied.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    scale = rng.uniform(0.5, 1.5)
    size = (max(8, round(crop_w * scale)), max(8, round(crop_h * scale)))
    return varied.resize(size, Image.Resampling.LANCZOS)


def varied_inputs(paths: list[Path], count: int, seed: int) -> Iterator[tuple[str, Image.Image]]:
    """`count` inputs, cycling through the photos; each photo appears once unvaried first."""
    photos = [load_rgb(p) for p in paths]
    rng = np.random.default_rng(seed)
    for index in range(count):
        round_, which = divmod(index, len(photos))
        name = f"{paths[which].stem}#{round_}"
        yield name, photos[which] if round_ == 0 else vary(photos[which], rng)


def recipe_of(metadata: dict[str, str]) -> md.Recipe:
    """The preprocessing recipe a model carries; ImageNet's for keys it lacks."""
    merged = {**md.IMAGENET_RECIPE.to_metadata(), **metadata}
    try:
        mean, std = json.loads(merged[md.MEAN]), json.loads(merged[md.STD])
        return md.Recipe(
            resize_size=int(merged[md.RESIZE_SIZE]),
            crop_size=int(merged[md.CROP_SIZE]),
            interpolation=merged[md.INTERPOLATION],
            mean=(float(mean[0]), float(mean[1]), float(mean[2])),
            std=(float(std[0]), float(std[1]), float(std[2])),
        )
    except (ValueError, TypeError, IndexError, KeyError) as exc:
        raise ExportError(f"the model's preprocessing metadata is unusable: {exc}") from exc


def preprocess(image: Image.Image, recipe: md.Recipe) -> np.ndarray:
    """float32 CHW, by the calls torchvision's ImageClassification transform makes."""
    resized = F.resize(
        image, [recipe.resize_size], InterpolationMode(recipe.interpolation), antialias=True
    )
    cropped = F.center_crop(resized, [recipe.crop_size])
    tensor = F.convert_image_dtype(F.pil_to_tensor(cropped), torch.float)
    normalized = F.normalize(tensor, list(recipe.mean), list(recipe.std))
    return np.ascontiguousarray(normalized.numpy(), dtype=np.float32)
