"""Preprocessing equals torchvision's eval transform, and hostile images are refused early."""

from __future__ import annotations

import io
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps
from torchvision.models import DenseNet121_Weights

from app.errors import ImageTooLarge, InvalidImage
from app.jpeg_scans import MAX_JPEG_SCANS, count_scans
from app.model_spec import Recipe
from app.preprocess import center_crop, decode, preprocess
from tests import hostile, images

IMAGENET = Recipe(256, 224, "bilinear", (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
CASES = images.cases()


def reference_tensor(data: bytes) -> np.ndarray:
    """What a PyTorch user computes: PIL decode, upright, RGB, then weights.transforms()."""
    image = ImageOps.exif_transpose(Image.open(io.BytesIO(data)))
    if image.mode.startswith("I"):
        # Pillow's own I;16 -> RGB clips to white; the documented choice is to keep the
        # high byte. Written independently of app.preprocess: divide, don't shift.
        high = (np.asarray(image, dtype=np.float64) // 256).astype(np.uint8)
        image = Image.fromarray(high, "L")
    rgb = image.convert("RGBA" if image.mode == "P" else image.mode).convert("RGB")
    tensor: torch.Tensor = DenseNet121_Weights.IMAGENET1K_V1.transforms()(rgb)
    return tensor.numpy()


@pytest.mark.parametrize("name", sorted(CASES))
def test_matches_torchvision_transforms(name: str) -> None:
    ours = preprocess(CASES[name], IMAGENET, max_pixels=10**8)
    expected = reference_tensor(CASES[name])
    assert ours.dtype == np.float32
    assert ours.shape == expected.shape == (3, 224, 224)
    assert np.max(np.abs(ours - expected)) <= 1e-5


def test_recipe_matches_the_weights_own() -> None:
    transform = DenseNet121_Weights.IMAGENET1K_V1.transforms()
    assert [IMAGENET.resize_size] == transform.resize_size
    assert [IMAGENET.crop_size] == transform.crop_size
    assert tuple(transform.mean) == IMAGENET.mean
    assert tuple(transform.std) == IMAGENET.std


def test_exif_orientation_is_applied() -> None:
    stored = Image.open(io.BytesIO(CASES["exif_rotated_jpeg"]))
    assert stored.size == (400, 300)
    assert decode(CASES["exif_rotated_jpeg"], 10**8).size == (300, 400)


def test_sixteen_bit_keeps_its_range() -> None:
    """Pillow's plain convert('RGB') would make this image almost all white."""
    rgb = np.asarray(decode(CASES["sixteen_bit_png"], 10**8))
    assert 60 < rgb.mean() < 200
    assert rgb.std() > 20


def test_crop_larger_than_image_pads_like_torchvision() -> None:
    import torchvision.transforms.functional as tf

    small = images.photo(101, 57)
    ours = np.asarray(center_crop(small, 224))
    theirs = np.asarray(tf.center_crop(small, [224, 224]))
    assert np.array_equal(ours, theirs)


def test_recipe_with_other_sizes_and_interpolation() -> None:
    recipe = Recipe(342, 299, "bicubic", (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms._presets import ImageClassification

    transform = ImageClassification(
        crop_size=299,
        resize_size=342,
        interpolation=InterpolationMode.BICUBIC,
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
    )
    data = CASES["landscape_jpeg"]
    expected = transform(Image.open(io.BytesIO(data)).convert("RGB")).numpy()
    assert np.max(np.abs(preprocess(data, recipe, 10**8) - expected)) <= 1e-5


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"hello, I am text",
        b"<html><body>not an image</body></html>",
        b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n",
        b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>',
        images.jpeg()[:2000],  # truncated mid-scan
        images.png()[:200],
    ],
    ids=["empty", "text", "html", "pdf", "svg", "truncated_jpeg", "truncated_png"],
)
def test_undecodable_input_is_invalid_image(data: bytes) -> None:
    with pytest.raises(InvalidImage):
        preprocess(data, IMAGENET, max_pixels=10**8)


def test_pixel_limit_is_checked_before_decoding() -> None:
    bomb = images.encode(Image.new("L", (8000, 8000)), "PNG")  # 64 MP, ~60 kB
    assert len(bomb) < 100_000
    with pytest.raises(ImageTooLarge, match="8000x8000"):
        decode(bomb, max_pixels=40_000_000)


def test_beyond_pillow_own_bomb_limit_is_image_too_large() -> None:
    huge = images.encode(Image.new("1", (20000, 20000)), "PNG")  # 400 MP
    with pytest.raises(ImageTooLarge):
        decode(huge, max_pixels=40_000_000)


def test_jpeg_draft_is_close_to_exact_and_smaller_decode() -> None:
    data = images.jpeg(2000, 1500)
    exact = preprocess(data, IMAGENET, 10**8)
    fast = preprocess(data, IMAGENET, 10**8, jpeg_draft=True)
    assert decode(data, 10**8, draft_short_side=512).size == (1000, 750)
    assert 0 < np.mean(np.abs(fast - exact)) < 0.05


def test_invalid_recipe_is_refused() -> None:
    with pytest.raises(ValueError, match="interpolation"):
        Recipe(256, 224, "lanczos9", (0, 0, 0), (1, 1, 1))


# VmHWM, not ru_maxrss: the latter carries the (large) test process's peak over exec.
PEAK_RSS_SCRIPT = """
import re, sys
from app.preprocess import decode
def peak():
    status = open("/proc/self/status").read()
    return int(re.search(r"^VmHWM:\\s+(\\d+) kB", status, re.MULTILINE)[1])
data = open(sys.argv[1], "rb").read()
before = peak()
image = decode(data, 10**9)
print(peak() - before, image.mode, image.size)
"""


def peak_decode_kib(path: Path) -> int:
    """Peak memory a fresh process adds while decoding `path` (KiB)."""
    result = subprocess.run(
        [sys.executable, "-c", PEAK_RSS_SCRIPT, str(path)],
        cwd=Path(__file__).resolve().parent.parent,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return int(result.stdout.split()[0])


def test_sixteen_bit_costs_about_what_eight_bit_does(tmp_path: Path) -> None:
    """16-bit decoding once made three int64 copies (24 bytes a pixel)."""
    height, width = 3000, 4000
    ramp = (np.arange(width, dtype=np.uint32)[None, :] * 16 + np.arange(height)[:, None]) % 65536
    wide = ramp.astype(np.uint16)
    Image.fromarray(wide).save(tmp_path / "16.png", compress_level=1)
    Image.fromarray((wide >> 8).astype(np.uint8)).save(tmp_path / "8.png", compress_level=1)
    sixteen, eight = peak_decode_kib(tmp_path / "16.png"), peak_decode_kib(tmp_path / "8.png")
    print(f"peak added by decoding: 16-bit {sixteen} KiB, 8-bit {eight} KiB")
    assert sixteen <= 1.5 * eight


@pytest.mark.parametrize(("short_side", "reduced"), [(1023, False), (1024, True)])
def test_jpeg_draft_starts_at_twice_the_minimum_short_side(short_side: int, reduced: bool) -> None:
    data = images.jpeg(short_side * 4 // 3, short_side)
    decoded = decode(data, 10**8, draft_short_side=512)
    assert (decoded.height < short_side) is reduced
    assert decoded.height >= 512


def test_the_setting_is_the_one_pixel_limit() -> None:
    """Above Pillow's own 179 M-pixel refusal: with a larger setting the header passes and
    only the (truncated) data fails, so Pillow no longer caps the setting."""
    header_only = hostile.png_with_size(15_000, 12_000)  # 180 M pixels claimed
    with pytest.raises(InvalidImage):
        decode(header_only, max_pixels=200_000_000)
    with pytest.raises(ImageTooLarge, match="the limit is 100000000"):
        decode(header_only, max_pixels=100_000_000)


def test_scans_are_counted_from_the_markers() -> None:
    assert count_scans(images.jpeg()) == 1
    assert count_scans(images.encode(images.photo(64, 64), "JPEG", progressive=True)) == 10
    assert count_scans(images.many_scan_jpeg(60)) == 60
    assert count_scans(images.many_scan_jpeg(5000)) == MAX_JPEG_SCANS + 1  # stops counting


def test_a_jpeg_of_too_many_scans_is_refused_before_decoding() -> None:
    """20,000 near-empty scans of a 4000x4000 image: 374 KB, 6 s of CPU to decode."""
    allowed = images.many_scan_jpeg(MAX_JPEG_SCANS)
    assert preprocess(allowed, IMAGENET, 10**7).shape == (3, 224, 224)
    bomb = images.many_scan_jpeg(20_000, size=4000)
    started = time.process_time()
    with pytest.raises(InvalidImage, match="more than 100 scans"):
        preprocess(bomb, IMAGENET, 10**8)
    assert time.process_time() - started < 1.0  # refused from the markers, not decoded
