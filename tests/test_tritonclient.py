"""Triton's own Python clients (`tritonclient[http]`, sync and asyncio) and a client
written like Triton's image_client.py, against a real `python -m app` process."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import tritonclient.http as httpclient
import tritonclient.http.aio as aioclient
from PIL import Image
from tritonclient.utils import InferenceServerException

from tests import hostile, images
from tests.conftest import ROOT, load_engine, settings_for
from tests.server import running
from tests.test_protocol_v2 import assert_same_as_classify
from tests.triton_image_client import preprocess

pytestmark = pytest.mark.slow
MODEL = "densenet-tiny"
UPLOAD_LIMIT = 8 * 1024 * 1024
JPEG = images.jpeg()
DECODING_FAILURE = "an exception occurred in the client while decoding the response"


@pytest.fixture(scope="module")
def server(tiny_model: Path) -> Iterator[str]:
    with running(tiny_model, max_v2_body_bytes=UPLOAD_LIMIT) as (_, url):
        yield url


@pytest.fixture
def client(server: str) -> Iterator[httpclient.InferenceServerClient]:
    triton = httpclient.InferenceServerClient(server.removeprefix("http://"))
    yield triton
    triton.close()


def fp32(x: np.ndarray[Any, Any], binary: bool = True) -> httpclient.InferInput:
    tensor = httpclient.InferInput("input", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x, binary_data=binary)
    return tensor


def image_input(*files: bytes) -> httpclient.InferInput:
    tensor = httpclient.InferInput("image", [len(files)], "BYTES")
    tensor.set_data_from_numpy(np.array(files, dtype=np.object_))
    return tensor


def top5(binary: bool = True) -> list[httpclient.InferRequestedOutput]:
    return [httpclient.InferRequestedOutput("logits", binary_data=binary, class_count=5)]


def sample(n: int = 1) -> np.ndarray[Any, np.dtype[np.float32]]:
    return np.random.default_rng(7).normal(size=(n, 3, 224, 224)).astype(np.float32)


def test_health_metadata_config_and_index(client: httpclient.InferenceServerClient) -> None:
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready(MODEL)
    assert client.is_model_ready(MODEL, "1")
    assert not client.is_model_ready("nope")
    assert not client.is_model_ready(MODEL, "2")
    metadata = client.get_model_metadata(MODEL)
    assert metadata["inputs"][0]["shape"] == [-1, 3, 224, 224]
    assert metadata["outputs"][0]["name"] == "logits"
    config = client.get_model_config(MODEL)
    assert config["input"][0]["format"] == "FORMAT_NCHW"
    assert config["max_batch_size"] >= 1
    assert client.get_model_repository_index() == [
        {"name": MODEL, "version": "1", "state": "READY", "reason": ""}
    ]
    assert "classification" in client.get_server_metadata()["extensions"]


def test_fp32_binary_and_json_agree_with_the_engine(
    client: httpclient.InferenceServerClient, tiny_model: Path
) -> None:
    x = sample(2)
    expected = load_engine(settings_for(tiny_model)).run(x)
    binary = client.infer(MODEL, [fp32(x)], request_id="b-1")
    assert binary.get_response()["id"] == "b-1"
    as_json = client.infer(
        MODEL, [fp32(x, binary=False)], outputs=[httpclient.InferRequestedOutput("logits", False)]
    )
    for result in (binary, as_json):
        np.testing.assert_allclose(result.as_numpy("logits"), expected, rtol=1e-4, atol=1e-5)
    for algorithm in ("gzip", "deflate"):
        packed = client.infer(MODEL, [fp32(x)], request_compression_algorithm=algorithm)
        np.testing.assert_array_equal(packed.as_numpy("logits"), binary.as_numpy("logits"))


def test_image_bytes_with_class_count_match_classify(
    client: httpclient.InferenceServerClient, server: str
) -> None:
    other = images.png(320, 200, seed=3)
    result = client.infer(MODEL, [image_input(JPEG, other)], outputs=top5())
    strings = result.as_numpy("logits")
    assert strings is not None
    assert strings.shape == (2, 5)
    for row, data in zip(strings, (JPEG, other), strict=True):
        response = httpx.post(
            f"{server}/classify", content=data, headers={"content-type": "image/png"}
        )
        assert_same_as_classify([s.decode() for s in row], response.json()["predictions"])
    as_json = client.infer(MODEL, [image_input(JPEG)], outputs=top5(binary=False))
    json_strings = as_json.as_numpy("logits")  # JSON BYTES come back as str
    assert json_strings is not None
    assert list(json_strings[0]) == [s.decode() for s in strings[0]]


def expect_error(call: Any, status: str, *fragments: str) -> str:
    with pytest.raises(InferenceServerException) as caught:
        call()
    message = caught.value.message()
    assert DECODING_FAILURE not in message
    assert caught.value.status() == status, message
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    return message


def test_errors_arrive_as_client_exceptions(client: httpclient.InferenceServerClient) -> None:
    x = sample()
    expect_error(lambda: client.infer("nope", [fp32(x)]), "404", "model_not_found", "nope")
    expect_error(lambda: client.infer(MODEL, [fp32(x)], "9"), "404", "has no version 9")
    small = sample()[:, :, :100, :100].copy()
    expect_error(lambda: client.infer(MODEL, [fp32(small)]), "400", "[N,3,224,224]")
    wrong_type = httpclient.InferInput("input", [1, 3, 224, 224], "FP64")
    wrong_type.set_data_from_numpy(x.astype(np.float64))
    expect_error(lambda: client.infer(MODEL, [wrong_type]), "400", "must be FP32, not FP64")
    bad = image_input(JPEG, b"not an image at all")
    expect_error(
        lambda: client.infer(MODEL, [bad], outputs=top5()), "400", "invalid_image", "element 1"
    )
    bomb = image_input(hostile.png_bomb())
    expect_error(lambda: client.infer(MODEL, [bomb]), "413", "image_too_large", "element 0")
    huge = image_input(*[bytes(3 * 1024 * 1024)] * 3)  # over this server's body limit
    expect_error(lambda: client.infer(MODEL, [huge]), "413", "payload_too_large")
    too_many = [httpclient.InferRequestedOutput("logits", class_count=1001)]
    expect_error(lambda: client.infer(MODEL, [fp32(x)], outputs=too_many), "400", "1000")
    expect_error(lambda: client.infer(MODEL, [fp32(x)], priority=1), "400", "parameters.priority")
    assert client.is_server_ready()


@pytest.fixture
async def aio(server: str) -> AsyncIterator[aioclient.InferenceServerClient]:
    triton = aioclient.InferenceServerClient(server.removeprefix("http://"))
    yield triton
    await triton.close()


async def test_asyncio_client(aio: aioclient.InferenceServerClient) -> None:
    assert await aio.is_server_live()
    assert await aio.is_server_ready()
    assert await aio.is_model_ready(MODEL)
    assert (await aio.get_model_config(MODEL))["max_batch_size"] >= 1
    x = sample(1)  # aiohttp warns about bodies over 1 MiB given as bytes (tritonclient does)
    binary = await aio.infer(MODEL, [fp32(x)])
    images_result = await aio.infer(MODEL, [image_input(JPEG)], outputs=top5())
    assert binary.as_numpy("logits").shape == (1, 1000)  # type: ignore[union-attr]
    assert images_result.as_numpy("logits").shape == (1, 5)  # type: ignore[union-attr]
    with pytest.raises(InferenceServerException) as caught:
        await aio.infer("nope", [fp32(x)])
    assert caught.value.status() == "404"
    assert "model_not_found" in caught.value.message()


def test_image_client_example_works_unchanged(tiny_model: Path, tmp_path: Path) -> None:
    """The example expects exactly one input: the operator lists the tensor alone."""
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(JPEG)
    with running(tiny_model, v2_metadata_inputs="tensor") as (_, server):
        command = [sys.executable, "-m", "tests.triton_image_client", "-m", MODEL, "-c", "5"]
        command += ["-s", "INCEPTION", "-u", server.removeprefix("http://"), str(photo)]
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip().endswith("PASS")
    lines = [line.strip() for line in done.stdout.splitlines() if ") = " in line]
    # The same preprocessing, run through the model directly: the same five classes.
    tensor = preprocess(Image.open(photo), "FORMAT_NCHW", "FP32", 3, 224, 224, "INCEPTION")
    logits = load_engine(settings_for(tiny_model)).run(tensor[np.newaxis])[0]
    expected = np.argsort(-logits, kind="stable")[:5]
    assert [int(line.split("(")[1].split(")")[0]) for line in lines] == expected.tolist()
