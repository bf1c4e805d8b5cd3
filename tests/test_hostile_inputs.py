"""Every hostile or odd input gets its documented answer, and the service keeps serving.

Also the security promises a request could test: no internals in errors, nothing in a
request selects a file, model or provider, CORS off unless configured, and the API key
compared in constant time.
"""

from __future__ import annotations

import dataclasses
import io
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from numpy.typing import NDArray
from PIL import Image

from tests import hostile, images
from tests.conftest import ROOT, load_engine, serve, settings_for
from tests.engines import ControlledEngine

CORPUS = hostile.corpus()
JPEG = images.jpeg(200, 150)
# Things that would only appear in a response if internals leaked into it.
INTERNALS = (
    "Traceback",
    'File "',
    ".py",
    "site-packages",
    str(ROOT),
    "/tmp",
    "onnx",
    "PIL",
    "Error:",
    "Exception",
)


@pytest.fixture(scope="module")
async def served(tiny_model: Path) -> AsyncIterator[httpx.AsyncClient]:
    async with serve(settings_for(tiny_model, **hostile.SETTINGS)) as (_, client):
        yield client


def assert_no_internals(response: httpx.Response, *secrets_: str) -> None:
    for marker in (*INTERNALS, *secrets_):
        assert marker not in response.text, (marker, response.text)


def test_corpus_covers_the_issue() -> None:
    names = {case.name for case in CORPUS}
    assert len(CORPUS) >= 30
    for required in (
        "raw_zero_bytes",
        "not_image_truncated_jpeg",
        "not_image_truncated_png",
        "not_image_html",
        "wrong_type_text",
        "png_named_jpg",
        "odd_one_by_one",
        "odd_wide_10000x10",
        "odd_grayscale",
        "odd_palette_transparency",
        "odd_rgba",
        "odd_cmyk_jpeg",
        "odd_sixteen_bit_png",
        "odd_animated_gif",
        "odd_animated_webp",
        "odd_exif_rotated",
        "png_bomb",
        "jpeg_huge_header",
        "raw_svg",
        "not_image_pdf",
        "odd_multipage_tiff",
        "not_image_heic",
        "multipart_without_file",
        "two_file_fields",
        "empty_file",
        "multipart_no_boundary",
        "top_k_zero",
        "top_k_negative",
        "top_k_above_classes",
        "top_k_text",
        "body_over_limit_chunked",
        "v2_malformed_json",
        "v2_header_length_past_end",
        "v2_binary_size_disagrees_with_shape",
        "v2_huge_declared_binary_size",
        "v2_bytes_length_prefix_past_end",
        "v2_base64_garbage",
        "v2_missing_inputs",
        "v2_extra_inputs",
        "v2_unknown_request_parameter",
        "v2_unknown_input_parameter",
        "v2_unknown_output_parameter",
    ):
        assert required in names, required
    assert len(hostile.png_bomb()) < 200_000  # tiny file, 10^8 pixels


def _param(case: hostile.Case) -> object:
    if case.name != "multipart_unterminated":
        return pytest.param(case, id=case.name)
    # Starlette's MultiPartParser drops an unfinished last part without closing its
    # SpooledTemporaryFile; CPython frees it as the request ends (the corpus memory test
    # in test_reliability.py shows no growth), but the collector warns about it.
    unclosed = (
        "ignore:Exception ignored.*SpooledTemporaryFile:pytest.PytestUnraisableExceptionWarning"
    )
    return pytest.param(case, id=case.name, marks=pytest.mark.filterwarnings(unclosed))


@pytest.mark.parametrize("case", [_param(case) for case in CORPUS])
async def test_each_input_gets_its_documented_answer(
    served: httpx.AsyncClient, case: hostile.Case
) -> None:
    response = await case.send_async(served)
    assert response.status_code == case.status, response.text
    assert response.headers["x-request-id"]
    assert_no_internals(response)
    body = response.json()
    if case.v2 and case.code is None:
        assert body["model_name"] == "densenet-tiny"
        assert body["outputs"][0]["name"] == "logits"
    elif case.v2:
        assert set(body) == {"error"}
        assert body["error"].startswith(f"{case.code}: ")
    elif case.code is None:
        assert body["model"] == "densenet-tiny"
        assert len(body["predictions"]) == int(case.params.get("top_k", 5))
    else:
        error = body["error"]
        assert set(error) == {"code", "message", "request_id"}
        assert error["code"] == case.code
        assert error["message"]
        assert error["request_id"] == response.headers["x-request-id"]
    still_serving = await served.post("/classify", files={"file": JPEG})
    assert still_serving.status_code == 200


async def classify(client: httpx.AsyncClient, data: bytes) -> list[dict[str, float]]:
    response = await client.post("/classify", files={"file": data}, params={"top_k": 10})
    assert response.status_code == 200, response.text
    predictions: list[dict[str, float]] = response.json()["predictions"]
    return predictions


def as_png(image: Image.Image) -> bytes:
    return images.encode(image.convert("RGB"), "PNG")


async def test_odd_images_are_classified_as_their_plain_equivalent(
    served: httpx.AsyncClient,
) -> None:
    """First frames, upright EXIF, misleading names: the same answer as the plain image."""
    for data in (hostile.animated("GIF"), hostile.animated("WEBP"), hostile.multipage_tiff()):
        first_frame = as_png(Image.open(io.BytesIO(data)))
        assert await classify(served, data) == await classify(served, first_frame)
    rotated = images.exif_rotated_jpeg()
    upright = Image.open(io.BytesIO(rotated)).transpose(Image.Transpose.ROTATE_270)
    assert await classify(served, rotated) == await classify(served, as_png(upright))
    png = images.png()
    misnamed = await served.post(
        "/classify", files={"file": ("x.jpg", png, "image/jpeg")}, params={"top_k": 10}
    )
    assert misnamed.json()["predictions"] == await classify(served, png)


async def test_request_cannot_choose_a_file_model_or_provider(
    served: httpx.AsyncClient,
) -> None:
    schema = (await served.get("/openapi.json")).json()
    for path, methods in schema["paths"].items():
        for operation in methods.values():
            names = {p["name"] for p in operation.get("parameters", [])}
            # model and version pick among the models loaded at start-up, nothing else
            assert names <= {"top_k", "model", "version", "name"}, (path, names)
    picked = next(case for case in CORPUS if case.name == "request_picks_file_and_provider")
    info = (await served.get("/model")).json()
    await picked.send_async(served)
    assert (await served.get("/model")).json() == info
    assert info["providers"] == ["CPUExecutionProvider"]


class LeakyEngine(ControlledEngine):
    """Fails inference with a message full of internals (paths, libraries)."""

    hidden_path = "/srv/secret-weights.onnx"

    def run(self, batch: NDArray[np.float32]) -> NDArray[np.float32]:
        if not batch.any():  # the warm-up's zeros: let the service become ready
            return super().run(batch)
        raise RuntimeError(f"cannot mmap {self.hidden_path}: see /usr/lib/libonnxruntime.so")


async def test_failures_do_not_leak_internals(tiny_model: Path) -> None:
    settings = settings_for(tiny_model)
    real = load_engine(settings)
    async with serve(settings, lambda: LeakyEngine(real)) as (_, client):
        failed = await client.post("/classify", files={"file": JPEG})
        assert failed.json()["error"]["code"] == "inference_failed"
        assert failed.status_code == 500
        assert_no_internals(failed, LeakyEngine.hidden_path, "mmap", "libonnxruntime")
    # A model whose labels do not match its outputs: an unexpected error in the route.
    broken = ControlledEngine(real)
    broken.spec = dataclasses.replace(real.spec, labels=["only", "three", "labels"])
    async with serve(settings, lambda: broken) as (_, client):
        crashed = await client.post("/classify", files={"file": JPEG}, params={"top_k": 1})
        assert crashed.status_code == 500
        assert crashed.json()["error"]["code"] == "internal_error"
        assert_no_internals(crashed, "IndexError", "list index")


async def test_api_key_is_compared_in_constant_time(
    tiny_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    compared: list[tuple[bytes, bytes]] = []

    real_compare = secrets.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return real_compare(a, b)

    monkeypatch.setattr("app.web.auth.secrets.compare_digest", spy)
    key = "k3y-" + "x" * 40
    async with serve(settings_for(tiny_model, api_key=key)) as (_, client):
        header: str | bytes
        for header, status in [
            (f"Bearer {key}", 200),
            (f"bearer {key}", 200),
            (f"Bearer {key[:-1]}", 401),  # a prefix is not the key
            (f"Bearer {key}x", 401),
            ("Bearer ", 401),
            (f"Basic {key}", 401),
            (key, 401),
            ("Bearer \xff\xfe".encode("latin-1"), 401),
        ]:
            response = await client.post(
                "/classify", files={"file": JPEG}, headers={"authorization": header}
            )
            assert response.status_code == status, header
            if status == 401:
                assert response.json()["error"]["code"] == "unauthorized"
                assert key not in response.text
                assert response.headers["www-authenticate"] == "Bearer"
        assert_no_internals(response)
    # Every token that reached a comparison went through compare_digest, not ==.
    assert len(compared) == 6
    assert all(expected == key.encode() for _, expected in compared)


async def test_cors_is_off_unless_configured(tiny_model: Path) -> None:
    evil = {"origin": "https://evil.test", "access-control-request-method": "POST"}
    async with serve(settings_for(tiny_model)) as (_, client):
        preflight = await client.options("/classify", headers=evil)
        simple = await client.get("/health/live", headers={"origin": "https://evil.test"})
        for response in (preflight, simple):
            assert not any(h.startswith("access-control-") for h in response.headers)
    allowed = settings_for(tiny_model, cors_origins=["https://good.test"])
    async with serve(allowed) as (_, client):
        preflight = await client.options("/classify", headers=evil)
        assert "access-control-allow-origin" not in preflight.headers
        simple = await client.get("/health/live", headers={"origin": "https://evil.test"})
        assert "access-control-allow-origin" not in simple.headers
        good = await client.get("/health/live", headers={"origin": "https://good.test"})
        assert good.headers["access-control-allow-origin"] == "https://good.test"
