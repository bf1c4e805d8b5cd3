"""Hostile and odd requests, made by code, each with the status and error code it must get.

`CORPUS` is run in-process (tests/test_hostile_inputs.py) and against a real server,
repeatedly, to watch its memory (tests/test_reliability.py). It assumes the server runs
with `SETTINGS` (a small upload limit, so the over-limit cases stay cheap).
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from functools import cache

import httpx
from PIL import Image

from tests import images

UPLOAD_LIMIT = 2 * 1024 * 1024
SETTINGS: dict[str, object] = {
    "max_upload_bytes": UPLOAD_LIMIT,
    "max_batch_images": 4,
    "max_batch_upload_bytes": 8 * 1024 * 1024,
    "max_v2_body_bytes": 8 * 1024 * 1024,
}
Part = tuple[str, tuple[str, bytes, str]]  # (field, (filename, content, content type))


@dataclass(frozen=True)
class Case:
    """One request: a raw body (`content`) or multipart `parts`, and what it must get."""

    name: str
    status: int
    code: str | None  # the error code; None for 200
    content: bytes | None = None
    content_type: str | None = None
    parts: tuple[Part, ...] = ()
    params: dict[str, str] = field(default_factory=dict)
    path: str = "/classify"
    chunked: bool = False  # stream the body with no Content-Length
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def v2(self) -> bool:
        """An Open Inference Protocol request: errors are {"error": "<code>: <message>"}."""
        return self.path.startswith("/v2/")

    def _kwargs(self) -> dict[str, object]:
        kwargs: dict[str, object] = {"params": self.params}
        headers = dict(self.headers)
        if self.content_type is not None:
            headers["content-type"] = self.content_type
        if headers:
            kwargs["headers"] = headers
        if self.parts:
            kwargs["files"] = list(self.parts)
        return kwargs

    def send(self, client: httpx.Client) -> httpx.Response:
        kwargs = self._kwargs()
        if self.content is not None:
            kwargs["content"] = _chunks(self.content) if self.chunked else self.content
        return client.post(self.path, **kwargs)

    async def send_async(self, client: httpx.AsyncClient) -> httpx.Response:
        kwargs = self._kwargs()
        if self.content is not None:
            kwargs["content"] = _achunks(self.content) if self.chunked else self.content
        return await client.post(self.path, **kwargs)


def _chunks(data: bytes, size: int = 65536) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def _achunks(data: bytes, size: int = 65536) -> AsyncIterator[bytes]:
    for chunk in _chunks(data, size):
        yield chunk


# --- files made by code ----------------------------------------------------------------


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


@cache
def png_bomb(width: int = 10_000, height: int = 10_000) -> bytes:
    """A valid grayscale PNG of width x height black pixels: ~100 kB that inflate to 100 MB."""
    compressor = zlib.compressobj(9)
    row = b"\x00" * (width + 1)  # filter byte + pixels
    idat = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", idat)
        + _png_chunk(b"IEND", b"")
    )


def png_with_size(width: int, height: int) -> bytes:
    """A small real PNG whose header is rewritten to claim width x height."""
    data = bytearray(images.png(16, 16))
    header = bytes(data[16:29])
    new = struct.pack(">II", width, height) + header[8:]
    data[16:29] = new
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + new))
    return bytes(data)


def jpeg_with_size(width: int, height: int) -> bytes:
    """A small real JPEG whose SOF marker is rewritten to claim width x height."""
    data = bytearray(images.jpeg(64, 48))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def animated(fmt: str, frames: int = 3) -> bytes:
    sequence = [images.photo(120, 90, seed=seed) for seed in range(frames)]
    if fmt == "GIF":
        sequence = [frame.convert("P") for frame in sequence]
    return images.encode(sequence[0], fmt, save_all=True, append_images=sequence[1:], duration=50)


def multipage_tiff() -> bytes:
    return animated("TIFF")


def pillow_format(fmt: str, mode: str = "RGB") -> bytes:
    """A valid file in a format Pillow reads but the service refuses (ICO, PPM, ...)."""
    return images.encode(images.photo(64, 64).convert(mode), fmt)


def solid_png(width: int, height: int, mode: str = "RGB") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, (width, height), 128).save(buffer, "PNG")
    return buffer.getvalue()


SVG = b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect/></svg>'
PDF = b"%PDF-1.4\n1 0 obj<</Type/Catalog>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n"
HEIC = struct.pack(">I", 24) + b"ftypheic" + b"\x00\x00\x00\x00mif1heic" + b"\x00" * 64
EPS = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n(pwned) print\nshowpage\n"
HTML = b"<!doctype html><html><body><img src=x onerror=alert(1)></body></html>"


def _file(data: bytes, filename: str = "upload.jpg", media: str = "image/jpeg") -> Part:
    return ("file", (filename, data, media))


def _raw_multipart(body: bytes, boundary: str = "xyz") -> dict[str, object]:
    return {"content": body, "content_type": f"multipart/form-data; boundary={boundary}"}


# --- the corpus --------------------------------------------------------------------------


def _classified() -> list[Case]:
    """Valid but odd images: every one is classified."""
    named = images.cases()
    odd = {
        "one_by_one": solid_png(1, 1),
        "wide_10000x10": images.png(10_000, 10),
        "tall_10x10000": images.png(10, 10_000),
        "thin_40000x1": solid_png(40_000, 1),  # resizing it naively needs ~8 GB
        "grayscale": named["grayscale"],
        "palette_transparency": images.palette_with_transparency(),
        "rgba": named["rgba"],
        "cmyk_jpeg": named["cmyk_jpeg"],
        "sixteen_bit_png": images.sixteen_bit_png(),
        "one_bit": named["one_bit"],
        "animated_gif": animated("GIF"),
        "animated_webp": animated("WEBP"),
        "exif_rotated": images.exif_rotated_jpeg(),
        "multipage_tiff": multipage_tiff(),
        "bmp": named["bmp"],
    }
    cases = [Case(f"odd_{name}", 200, None, parts=(_file(data),)) for name, data in odd.items()]
    png = images.png()
    return [
        *cases,
        Case("png_named_jpg", 200, None, parts=(_file(png, "cat.jpg", "image/jpeg"),)),
        Case("raw_png_declared_jpeg", 200, None, content=png, content_type="image/jpeg"),
        Case("raw_octet_stream", 200, None, content=png, content_type="application/octet-stream"),
        Case("filename_traversal", 200, None, parts=(_file(png, "../../etc/passwd", "x/y"),)),
        Case("filename_unicode", 200, None, parts=(_file(png, "猫 ☃.png", "image/png"),)),
        Case(
            "request_picks_file_and_provider",  # ignored: nothing in a request selects them
            200,
            None,
            parts=(_file(png),),
            params={
                "model_path": "../x.onnx",
                "provider": "CUDAExecutionProvider",
                "providers": "TensorrtExecutionProvider",
            },
        ),
        Case(
            "model_name_is_a_path",  # names match only the models loaded at start-up
            404,
            "model_not_found",
            parts=(_file(png),),
            params={
                "model": "/etc/passwd",
                "model_path": "../x.onnx",
                "provider": "CUDAExecutionProvider",
                "providers": "TensorrtExecutionProvider",
            },
        ),
        Case("top_k_max", 200, None, parts=(_file(png),), params={"top_k": "1000"}),
    ]


def _not_images() -> list[Case]:
    jpeg, png = images.jpeg(), images.png()
    bad = {
        "truncated_jpeg": jpeg[: len(jpeg) // 2],
        "truncated_png": png[: len(png) // 2],
        "jpeg_header_only": jpeg[:200],
        "text": b"hello, I am a cat picture",
        "html": HTML,
        "svg": SVG,
        "pdf": PDF,
        "heic": HEIC,
        "eps": EPS,  # Pillow would hand EPS to Ghostscript: refused before that
        "ico": pillow_format("ICO"),
        "ppm": pillow_format("PPM"),
        "png_zero_width": png_with_size(0, 16),
        "png_bad_crc": png[:30] + bytes([png[30] ^ 0xFF]) + png[31:],
        "random_bytes": bytes(range(256)) * 40,
    }
    return [
        Case("raw_zero_bytes", 400, "invalid_image", content=b"", content_type="image/jpeg"),
        Case("empty_file", 400, "invalid_image", parts=(_file(b""),)),
        Case("raw_svg", 400, "invalid_image", content=SVG, content_type="image/svg+xml"),
        *(Case(f"not_image_{n}", 400, "invalid_image", parts=(_file(d),)) for n, d in bad.items()),
    ]


def _too_large() -> list[Case]:
    over = b"\xff\xd8" + b"\x00" * UPLOAD_LIMIT
    return [
        Case("png_bomb", 413, "image_too_large", parts=(_file(png_bomb()),)),
        # Between the service's limit (40 M) and Pillow's own (89 M warns, 179 M refuses):
        # only the service's check can refuse these.
        Case(
            "png_header_over_service_limit_under_pillow_warning",
            413,
            "image_too_large",
            parts=(_file(png_with_size(8_000, 6_000)),),
        ),
        Case(
            "png_header_over_pillow_warning_under_pillow_error",
            413,
            "image_too_large",
            parts=(_file(png_with_size(12_000, 10_000)),),
        ),
        Case(
            "png_huge_header", 413, "image_too_large", parts=(_file(png_with_size(10**5, 10**5)),)
        ),
        Case(
            "jpeg_huge_header",
            413,
            "image_too_large",
            parts=(_file(jpeg_with_size(60_000, 60_000)),),
        ),
        Case("body_over_limit", 413, "payload_too_large", content=over, content_type="image/jpeg"),
        Case(
            "body_over_limit_chunked",
            413,
            "payload_too_large",
            content=over,
            content_type="image/jpeg",
            chunked=True,
        ),
        Case("multipart_over_limit", 413, "payload_too_large", parts=(_file(over),)),
    ]


def _bad_requests() -> list[Case]:
    jpeg = images.jpeg(200, 150)
    part = b'Content-Disposition: form-data; name="file"; filename="a.jpg"\r\n\r\n'
    return [
        Case(
            "wrong_type_text",
            415,
            "unsupported_media_type",
            content=jpeg,
            content_type="text/plain",
        ),
        Case("no_content_type", 415, "unsupported_media_type", content=jpeg),
        Case(
            "json_body",
            415,
            "unsupported_media_type",
            content=b'{"image": "aGk="}',
            content_type="application/json",
        ),
        Case(
            "form_urlencoded",
            415,
            "unsupported_media_type",
            content=b"file=abc",
            content_type="application/x-www-form-urlencoded",
        ),
        Case("raw_pdf", 415, "unsupported_media_type", content=PDF, content_type="application/pdf"),
        Case(
            "multipart_without_file",
            400,
            "missing_file",
            parts=(("image", ("a.jpg", jpeg, "image/jpeg")),),
        ),
        Case("two_file_fields", 400, "malformed_request", parts=(_file(jpeg), _file(jpeg))),
        Case(
            "multipart_no_boundary",
            400,
            "malformed_request",
            content=b"--x\r\n" + part,
            content_type="multipart/form-data",
        ),
        Case(
            "multipart_wrong_boundary",
            400,
            "malformed_request",
            **_raw_multipart(b"--other\r\n" + part + jpeg + b"\r\n--other--\r\n"),
        ),
        # The part never ends: a malformed body, not a missing field.
        Case(
            "multipart_unterminated",
            400,
            "malformed_request",
            **_raw_multipart(b"--xyz\r\n" + part + jpeg[:500]),
        ),
        Case(
            "multipart_without_closing_boundary",
            400,
            "malformed_request",
            **_raw_multipart(b"--xyz\r\n" + part + jpeg + b"\r\n"),
        ),
        Case(
            "multipart_garbage",
            400,
            "malformed_request",
            **_raw_multipart(b"--xyz\r\n\x00\x01garbage without headers"),
        ),
        *(
            Case(
                f"top_k_{label}",
                422,
                "invalid_parameter",
                parts=(_file(jpeg),),
                params={"top_k": value},
            )
            for label, value in [
                ("zero", "0"),
                ("negative", "-1"),
                ("above_classes", "1001"),
                ("text", "abc"),
                ("float", "2.5"),
                ("huge", "9" * 40),
            ]
        ),
        Case(
            "batch_too_many_files",
            400,
            "malformed_request",
            path="/classify/batch",
            parts=tuple(("files", (f"{i}.jpg", jpeg, "image/jpeg")) for i in range(5)),
        ),
        Case(
            "batch_raw_body",
            415,
            "unsupported_media_type",
            path="/classify/batch",
            content=jpeg,
            content_type="image/jpeg",
        ),
        Case(
            "batch_wrong_field", 400, "missing_file", path="/classify/batch", parts=(_file(jpeg),)
        ),
    ]


def corpus() -> list[Case]:
    from tests import hostile_v2  # it builds on Case

    cases = [*_classified(), *_not_images(), *_too_large(), *_bad_requests(), *hostile_v2.corpus()]
    assert len({case.name for case in cases}) == len(cases), "case names must be unique"
    return cases
