"""Image bytes -> normalized float32 CHW tensor, reproducing torchvision's eval transform.

torchvision's ``weights.transforms()`` on a PIL image resizes the shorter side with
PIL (which antialiases), center-crops, scales to [0, 1] and normalizes. The same PIL
calls are made here, so tensors agree to float rounding (tests hold them to 1e-5).
Pure functions: no FastAPI, no threads; callers run them off the event loop.
"""

from __future__ import annotations

import io

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageOps, UnidentifiedImageError

from app.errors import ImageTooLarge, InvalidImage
from app.jpeg_scans import MAX_JPEG_SCANS, count_scans
from app.model_spec import Recipe

# Formats a photo upload can reasonably be; everything else Pillow can open (EPS, PSD,
# ICO, ...) is refused so that odd decoders are never reachable from the network.
ALLOWED_FORMATS = ("JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF")  # JPEG covers MPO
_SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")
# Resizing the shorter side of a very thin image makes its long side huge: a 200-byte
# 40000x1 PNG would become 256 x 10 million pixels (about 8 GB). Beyond this many resized
# pixels only the window that the center crop keeps is resized: the same picture, though
# not bit-exact with torchvision, which would allocate all of it.
MAX_EXACT_RESIZE_PIXELS = 4_000_000
_RESAMPLE = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
}


def decode(data: bytes, max_pixels: int, draft_short_side: int | None = None) -> Image.Image:
    """Decode an upload into an upright RGB image, refusing oversized ones before allocation.

    EXIF orientation is applied (phone photos come out upright). The first frame of an
    animation is used. With `draft_short_side`, JPEGs are decoded at the smallest DCT
    scale that keeps the shorter side at least that long.
    """
    Image.init()  # registers the WebP and TIFF plugins once; cheap afterwards
    # `max_pixels` is the one limit: Pillow's own (89 M pixels warns, 179 M fails) would
    # otherwise cap the setting silently and log a warning per large image.
    Image.MAX_IMAGE_PIXELS = None
    try:
        image: Image.Image = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooLarge(f"image exceeds the limit of {max_pixels} pixels") from exc
    except UnidentifiedImageError as exc:
        raise InvalidImage("not a decodable image; send JPEG, PNG, GIF, WebP, BMP or TIFF") from exc
    except Exception as exc:
        raise InvalidImage("image header is corrupt") from exc
    width, height = image.size
    if width * height > max_pixels:
        raise ImageTooLarge(f"image is {width}x{height}; the limit is {max_pixels} pixels")
    if image.format in ("JPEG", "MPO") and count_scans(data) > MAX_JPEG_SCANS:
        raise InvalidImage(
            f"a JPEG of more than {MAX_JPEG_SCANS} scans is refused: each scan is a pass "
            "over the whole image, and encoders write at most a few dozen"
        )
    if draft_short_side and image.format in ("JPEG", "MPO"):
        reduce = draft_reduction(width, height, draft_short_side)
        if reduce > 1:
            image.draft("RGB", (width // reduce, height // reduce))
    try:
        image.load()
        image = ImageOps.exif_transpose(image)
        return to_rgb(image)
    except Exception as exc:
        raise InvalidImage("image data is truncated or corrupt") from exc


def draft_reduction(width: int, height: int, min_short_side: int) -> int:
    """The largest DCT scale-down (1, 2, 4 or 8) that keeps the shorter side at least
    `min_short_side`: a JPEG is reduced from a shorter side of 2 x `min_short_side` on."""
    return next((r for r in (8, 4, 2) if min(width, height) >= r * min_short_side), 1)


def to_rgb(image: Image.Image) -> Image.Image:
    """RGB as ``Image.convert('RGB')`` gives it, except that 16-bit images are scaled
    to 8 bits (Pillow's own conversion clips them to white)."""
    if image.mode == "RGB":
        return image
    if image.mode in _SIXTEEN_BIT_MODES:
        return Image.fromarray(high_byte(np.asarray(image))).convert("RGB")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")  # Pillow warns on a direct P -> RGB here
    return image.convert("RGB")


def high_byte(wide: NDArray[np.integer]) -> NDArray[np.uint8]:
    """The top 8 of 16 bits of each pixel (values outside 0..65535 clipped), computed in
    bands of about a million pixels: no full-size wide temporary (these once cost 24 bytes
    a pixel), so a 16-bit image costs about what the same image at 8 bits does."""
    eight = np.empty(wide.shape, dtype=np.uint8)
    band = max(1, (1 << 20) // max(1, wide.shape[-1]))
    for top in range(0, wide.shape[0], band):
        rows = wide[top : top + band]
        if rows.dtype.kind == "i" or rows.dtype.itemsize > 2:
            rows = np.clip(rows, 0, 65535)
        eight[top : top + band] = rows >> 8
    return eight


def resized_size(width: int, height: int, resize_size: int) -> tuple[int, int]:
    """torchvision's output size for resizing the shorter side to `resize_size`."""
    short, long = (width, height) if width <= height else (height, width)
    new_long = int(resize_size * long / short)
    return (resize_size, new_long) if width <= height else (new_long, resize_size)


def center_crop(image: Image.Image, crop_size: int) -> Image.Image:
    """torchvision's center_crop: zero-pad if smaller than the crop, then crop."""
    width, height = image.size
    if crop_size > width or crop_size > height:
        padded = Image.new(image.mode, (max(width, crop_size), max(height, crop_size)))
        padded.paste(image, ((max(crop_size - width, 0)) // 2, (max(crop_size - height, 0)) // 2))
        image, (width, height) = padded, padded.size
    top = round((height - crop_size) / 2.0)
    left = round((width - crop_size) / 2.0)
    return image.crop((left, top, left + crop_size, top + crop_size))


def _crop_window(length: int, crop_size: int) -> tuple[int, int, int]:
    """(start, length, padding) of center_crop along one axis of the resized image."""
    if length >= crop_size:
        return round((length - crop_size) / 2.0), crop_size, 0
    return 0, length, (crop_size - length) // 2


def resize_crop_window(
    image: Image.Image, size: tuple[int, int], crop_size: int, resample: Image.Resampling
) -> Image.Image:
    """center_crop(image.resize(size)), resizing only the part of `image` the crop keeps."""
    (left, width, pad_x), (top, height, pad_y) = (_crop_window(n, crop_size) for n in size)
    scale_x, scale_y = image.width / size[0], image.height / size[1]
    box = (left * scale_x, top * scale_y, (left + width) * scale_x, (top + height) * scale_y)
    window = image.resize((width, height), resample, box=box)
    if (width, height) == (crop_size, crop_size):
        return window
    padded = Image.new(window.mode, (crop_size, crop_size))
    padded.paste(window, (pad_x, pad_y))
    return padded


def to_tensor(image: Image.Image, recipe: Recipe) -> NDArray[np.float32]:
    """Resize, crop, normalize: the float32 CHW array the model takes."""
    size = resized_size(image.width, image.height, recipe.resize_size)
    resample = _RESAMPLE[recipe.interpolation]
    if size[0] * size[1] > MAX_EXACT_RESIZE_PIXELS:
        image = resize_crop_window(image, size, recipe.crop_size, resample)
    else:
        if size != image.size:
            image = image.resize(size, resample)
        image = center_crop(image, recipe.crop_size)
    pixels = np.asarray(image)  # [H, W, 3] uint8
    tensor = np.empty((3, *pixels.shape[:2]), dtype=np.float32)
    for channel in range(3):
        np.take(recipe.lookup[channel], pixels[:, :, channel], out=tensor[channel])
    return tensor


def preprocess(
    data: bytes, recipe: Recipe, max_pixels: int, jpeg_draft: bool = False
) -> NDArray[np.float32]:
    draft = 2 * recipe.resize_size if jpeg_draft else None
    return to_tensor(decode(data, max_pixels, draft), recipe)
