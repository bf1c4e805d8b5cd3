"""Test JPEGs made from real photos that ship inside installed packages (no network).

Sources: matplotlib's ``grace_hopper.jpg`` and scikit-image's bundled astronaut, chelsea,
coffee, motorcycle_left and rocket photos. Each is center-cropped to 4:3 (keeping its
orientation) and resized with Lanczos to a web size (640x480) and a phone-camera size
(4000x3000), then saved as JPEG quality 90. The sources are at most 741 px wide, so the
phone size is an upscale; light Gaussian grain (sigma 4) stands in for sensor noise so that
file sizes and decode work resemble a real camera JPEG rather than a smooth upscale.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image

SIZES: dict[str, tuple[int, int]] = {"web": (640, 480), "phone": (4000, 3000)}
JPEG_QUALITY = 90
GRAIN_SIGMA = 4.0
_SKIMAGE_FILES = ("astronaut.png", "chelsea.png", "coffee.png", "motorcycle_left.png", "rocket.jpg")


@dataclass(frozen=True)
class Photo:
    name: str
    source: str  # "package: file", for the results
    jpeg: bytes
    size: tuple[int, int]


@cache
def source_photos() -> dict[str, tuple[str, Image.Image]]:
    """Every bundled photo found: name -> (where it comes from, RGB image)."""
    found: dict[str, tuple[str, Image.Image]] = {}
    try:
        import matplotlib

        path = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
        found["grace_hopper"] = ("matplotlib: mpl-data/sample_data/grace_hopper.jpg", _load(path))
    except ImportError:
        pass
    try:
        import skimage

        data_dir = Path(skimage.__file__).parent / "data"
        for file_name in _SKIMAGE_FILES:
            if (data_dir / file_name).exists():
                label = f"scikit-image: data/{file_name}"
                found[Path(file_name).stem] = (label, _load(data_dir / file_name))
    except ImportError:
        pass
    if not found:
        raise RuntimeError("no bundled photos: install matplotlib and/or scikit-image")
    return found


def _load(path: Path) -> Image.Image:
    with Image.open(path) as image:
        return image.convert("RGB")


def make_jpeg(image: Image.Image, size_name: str, seed: int = 0) -> tuple[bytes, tuple[int, int]]:
    """Crop to 4:3 in the photo's own orientation, resize, add grain when upscaling, encode."""
    long_side, short_side = SIZES[size_name]
    w, h = image.size
    target = (long_side, short_side) if w >= h else (short_side, long_side)
    aspect = target[0] / target[1]
    crop_w, crop_h = (round(h * aspect), h) if w / h > aspect else (w, round(w / aspect))
    left, top = (w - crop_w) // 2, (h - crop_h) // 2
    resized = image.crop((left, top, left + crop_w, top + crop_h)).resize(
        target, Image.Resampling.LANCZOS
    )
    if target[0] > crop_w:
        rng = np.random.default_rng(seed)
        pixels = np.asarray(resized, dtype=np.float32)
        pixels += rng.normal(0.0, GRAIN_SIGMA, pixels.shape).astype(np.float32)
        resized = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    out = io.BytesIO()
    resized.save(out, format="JPEG", quality=JPEG_QUALITY)
    return out.getvalue(), target


def make_photos(size_name: str, limit: int | None = None) -> list[Photo]:
    """The test set for one size, in a fixed order."""
    photos = []
    for index, (name, (source, image)) in enumerate(sorted(source_photos().items())):
        if limit is not None and index >= limit:
            break
        jpeg, size = make_jpeg(image, size_name, seed=index)
        photos.append(Photo(name=name, source=source, jpeg=jpeg, size=size))
    return photos


def write_photos(directory: Path, size_name: str, limit: int | None = None) -> list[Path]:
    """Write the test set as ``<name>.jpg`` files (the load generator reads them)."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for photo in make_photos(size_name, limit):
        path = directory / f"{photo.name}.jpg"
        path.write_bytes(photo.jpeg)
        paths.append(path)
    return paths
