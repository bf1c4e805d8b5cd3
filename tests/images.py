"""Test images made by code: photo-like content in every mode and format the service meets."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image


def photo(width: int, height: int, seed: int = 0) -> Image.Image:
    """Smooth gradients plus texture, so resizing and cropping have real work to do."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    channels = [
        127 + 100 * np.sin(x / (width / 3.1) + phase) * np.cos(y / (height / 2.3) - phase)
        for phase in (0.0, 1.3, 2.6)
    ]
    pixels = np.stack(channels, axis=-1) + rng.normal(0, 18, (height, width, 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")


def encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def jpeg(width: int = 640, height: int = 480, seed: int = 0, quality: int = 90) -> bytes:
    return encode(photo(width, height, seed), "JPEG", quality=quality)


def png(width: int = 320, height: int = 240, seed: int = 0) -> bytes:
    return encode(photo(width, height, seed), "PNG")


def sixteen_bit_png(width: int = 300, height: int = 260) -> bytes:
    gray = np.asarray(photo(width, height).convert("L"), dtype=np.uint16) * 257
    gray = gray + np.arange(width, dtype=np.uint16)[None, :] % 200  # low byte matters too
    return encode(Image.fromarray(gray.astype(np.uint16)), "PNG")


def exif_rotated_jpeg(width: int = 400, height: int = 300, orientation: int = 6) -> bytes:
    """Stored landscape with an EXIF tag saying 'rotate 90 degrees to display'."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(photo(width, height, seed=3), "JPEG", quality=92, exif=exif.tobytes())


def palette_with_transparency(width: int = 256, height: int = 200) -> bytes:
    image = photo(width, height, seed=4).convert("P", palette=Image.Palette.ADAPTIVE, colors=64)
    return encode(image, "PNG", transparency=0)


def many_scan_jpeg(scans: int, size: int = 1000) -> bytes:
    """A progressive JPEG of one flat colour whose smallest scan is repeated until it has
    `scans` scans: a few bytes per scan, a pass over the whole image to decode each."""
    data = encode(Image.new("RGB", (size, size), (120, 80, 40)), "JPEG", progressive=True)
    position, pieces = 2, []  # (marker, bytes) after SOI; a scan with its entropy data
    while data[position + 1] != 0xD9:
        marker = data[position + 1]
        end = position + 2 + int.from_bytes(data[position + 2 : position + 4], "big")
        while marker == 0xDA and not (data[end] == 0xFF and data[end + 1] not in SCAN_BYTES):
            end += 1
        pieces.append((marker, data[position:end]))
        position = end
    found = [piece for marker, piece in pieces if marker == 0xDA]
    assert len(found) <= scans, len(found)
    tables = b"".join(piece for marker, piece in pieces if marker != 0xDA)
    smallest = min(found[1:], key=len)
    return data[:2] + tables + b"".join(found) + smallest * (scans - len(found)) + b"\xff\xd9"


SCAN_BYTES = frozenset([0x00, *range(0xD0, 0xD8)])  # 0xFF then these stays inside a scan


def cases() -> dict[str, bytes]:
    """Named images covering the modes and shapes the preprocessing must handle."""
    base = photo(500, 375, seed=1)
    return {
        "landscape_jpeg": jpeg(640, 480),
        "portrait_jpeg": jpeg(375, 500, seed=2),
        "square_png": png(300, 300),
        "non_square_png": png(333, 222),
        "smaller_than_crop": png(120, 90),
        "tall_thin": png(40, 400),
        "grayscale": encode(base.convert("L"), "PNG"),
        "grayscale_jpeg": encode(base.convert("L"), "JPEG", quality=90),
        "palette": encode(base.convert("P", palette=Image.Palette.ADAPTIVE), "PNG"),
        "palette_transparent": palette_with_transparency(),
        "rgba": encode(base.convert("RGBA"), "PNG"),
        "la": encode(base.convert("LA"), "PNG"),
        "cmyk_jpeg": encode(base.convert("CMYK"), "JPEG", quality=90),
        "sixteen_bit_png": sixteen_bit_png(),
        "exif_rotated_jpeg": exif_rotated_jpeg(),
        "one_bit": encode(base.convert("1"), "PNG"),
        "gif": encode(base.convert("P"), "GIF"),
        "webp": encode(base, "WEBP", quality=90),
        "bmp": encode(base, "BMP"),
        "tiff": encode(base, "TIFF"),
    }
