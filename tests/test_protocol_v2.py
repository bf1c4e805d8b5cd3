"""The Open Inference Protocol (v2) REST routes, in-process over httpx, on a real ONNX
Runtime session of the tiny DenseNet: bodies built by hand, byte by byte, so that the
codec is checked against the specification and not only against one client."""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
import struct
import time
import zlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from app.dataplane.inference import top_k_strings
from app.dataplane.oip import DecodeLimits
from app.engine import Engine
from app.web.v2.rest_decode import decode_request
from tests import images
from tests.conftest import load_engine, serve, settings_for, wait_until
from tests.engines import ControlledEngine

MODEL = "densenet-tiny"
JSON_TYPE = "application/json"
INFER = f"/v2/models/{MODEL}/infer"
JPEG = images.jpeg()


@pytest.fixture(scope="module")
async def v2(tiny_model: Path) -> AsyncIterator[httpx.AsyncClient]:
    async with serve(settings_for(tiny_model, max_v2_body_bytes=8 * 1024 * 1024)) as (
        _,
        client,
    ):
        yield client


@pytest.fixture(scope="module")
def engine(tiny_model: Path) -> Engine:
    return load_engine(settings_for(tiny_model))


def tensor(n: int = 1, seed: int = 0) -> np.ndarray[Any, np.dtype[np.float32]]:
    return np.random.default_rng(seed).normal(size=(n, 3, 224, 224)).astype(np.float32)


def binary_request(header: dict[str, Any], *chunks: bytes) -> tuple[bytes, dict[str, str]]:
    head = json.dumps(header).encode()
    return head + b"".join(chunks), {"inference-header-content-length": str(len(head))}


def fp32_input(array: np.ndarray[Any, Any], binary: bool = True) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": "input", "shape": list(array.shape), "datatype": "FP32"}
    if binary:
        entry["parameters"] = {"binary_data_size": array.nbytes}
    else:
        entry["data"] = array.tolist()
    return entry


def length_prefixed(*elements: bytes) -> bytes:
    return b"".join(struct.pack("<I", len(e)) + e for e in elements)


def split(response: httpx.Response) -> tuple[dict[str, Any], bytes]:
    size = int(response.headers.get("inference-header-content-length", len(response.content)))
    header: dict[str, Any] = json.loads(response.content[:size])
    return header, response.content[size:]


def assert_v2_error(response: httpx.Response, status: int, *fragments: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert isinstance(body["error"], str)
    for fragment in fragments:
        assert fragment in body["error"], (fragment, body["error"])
    message: str = body["error"]
    return message


async def test_fp32_binary_in_binary_out_matches_the_engine(
    v2: httpx.AsyncClient, engine: Engine
) -> None:
    x = tensor(3)
    body, headers = binary_request(
        {"id": "r-1", "inputs": [fp32_input(x)], "parameters": {"binary_data_output": True}},
        x.tobytes(),
    )
    response = await v2.post(INFER, content=body, headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/octet-stream"
    header, data = split(response)
    assert header["id"] == "r-1"
    assert header["model_name"] == MODEL
    assert header["model_version"] == "1"
    [output] = header["outputs"]
    assert output == {
        "name": "logits",
        "datatype": "FP32",
        "shape": [3, 1000],
        "parameters": {"binary_data_size": 3 * 1000 * 4},
    }
    logits = np.frombuffer(data, "<f4").reshape(3, 1000)
    np.testing.assert_allclose(logits, engine.run(x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("nested", [True, False], ids=["nested", "flat"])
async def test_fp32_json_in_json_out(v2: httpx.AsyncClient, engine: Engine, nested: bool) -> None:
    x = tensor(1, seed=1)
    entry = fp32_input(x, binary=False)
    if not nested:
        entry["data"] = x.ravel().tolist()
    response = await v2.post(INFER, json={"inputs": [entry]})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    [output] = response.json()["outputs"]
    assert output["shape"] == [1, 1000]
    logits = np.asarray(output["data"], dtype=np.float32).reshape(1, 1000)
    np.testing.assert_allclose(logits, engine.run(x), rtol=1e-4, atol=1e-5)


async def classify_top5(client: httpx.AsyncClient, data: bytes) -> list[dict[str, Any]]:
    response = await client.post("/classify", content=data, headers={"content-type": "image/jpeg"})
    assert response.status_code == 200, response.text
    predictions: list[dict[str, Any]] = response.json()["predictions"]
    return predictions


def assert_same_as_classify(strings: list[str], predictions: list[dict[str, Any]]) -> None:
    """Same indices and labels in the same order; value gaps are log-probability ratios."""
    parsed = [s.split(":", 2) for s in strings]
    assert [(int(i), label) for _, i, label in parsed] == [
        (p["class_index"], p["label"]) for p in predictions
    ]
    values = [float(v) for v, _, _ in parsed]
    for (v, _, _), p in zip(parsed[1:], predictions[1:], strict=True):
        ratio = predictions[0]["probability"] / p["probability"]
        assert ratio == pytest.approx(np.exp(values[0] - float(v)), rel=1e-4)


async def test_image_bytes_binary_and_base64_json_classify_like_classify(
    v2: httpx.AsyncClient,
) -> None:
    other = images.png(300, 200, seed=5)
    wanted = {"name": "logits", "parameters": {"classification": 5, "binary_data": True}}
    chunk = length_prefixed(JPEG, other)
    body, headers = binary_request(
        {
            "inputs": [
                {
                    "name": "image",
                    "shape": [2, 1],
                    "datatype": "BYTES",
                    "parameters": {"binary_data_size": len(chunk)},
                }
            ],
            "outputs": [wanted],
        },
        chunk,
    )
    binary = await v2.post(INFER, content=body, headers=headers)
    assert binary.status_code == 200, binary.text
    header, data = split(binary)
    assert header["outputs"][0]["datatype"] == "BYTES"
    assert header["outputs"][0]["shape"] == [2, 5]
    strings, position = [], 0
    while position < len(data):
        (size,) = struct.unpack_from("<I", data, position)
        strings.append(data[position + 4 : position + 4 + size].decode())
        position += 4 + size
    assert len(strings) == 10
    assert_same_as_classify(strings[:5], await classify_top5(v2, JPEG))
    assert_same_as_classify(strings[5:], await classify_top5(v2, other))
    as_json = await v2.post(
        INFER,
        json={
            "inputs": [
                {
                    "name": "image",
                    "shape": [1],
                    "datatype": "BYTES",
                    "data": [base64.b64encode(JPEG).decode()],
                }
            ],
            "outputs": [{"name": "logits", "parameters": {"classification": 5}}],
        },
    )
    assert as_json.status_code == 200, as_json.text
    assert as_json.json()["outputs"][0]["data"] == strings[:5]


def test_classification_is_top_k_by_value_ties_to_the_lower_index() -> None:
    rows = np.array([[1.0, 3.0, 3.0, -2.0, 3.0, 2.5], [0.0, 0.0, 0.0, 0.0, 0.0, 0.0]], np.float32)
    labels = ["a", "b", "c", "d", "e", "f"]
    assert top_k_strings(rows, 4, labels) == [
        b"3.0:1:b",
        b"3.0:2:c",
        b"3.0:4:e",
        b"2.5:5:f",
        b"0.0:0:a",
        b"0.0:1:b",
        b"0.0:2:c",
        b"0.0:3:d",
    ]


async def test_gzip_and_deflate_bodies_are_inflated(v2: httpx.AsyncClient) -> None:
    x = tensor(1)
    body, headers = binary_request({"inputs": [fp32_input(x)]}, x.tobytes())
    plain = (await v2.post(INFER, content=body, headers=headers)).json()
    for encoding, packed in [("gzip", gzip.compress(body)), ("deflate", zlib.compress(body))]:
        response = await v2.post(
            INFER, content=packed, headers={**headers, "content-encoding": encoding}
        )
        assert response.status_code == 200, (encoding, response.text)
        assert response.json() == plain
    refused = await v2.post(INFER, content=body, headers={**headers, "content-encoding": "br"})
    assert_v2_error(refused, 415, "unsupported_media_type", "br")


async def test_metadata_config_health_and_index(v2: httpx.AsyncClient) -> None:
    server = (await v2.get("/v2")).json()
    assert server["name"] == "densenet-serve"
    assert {"binary_tensor_data", "classification"} <= set(server["extensions"])
    assert (await v2.get("/v2/health/live")).status_code == 200
    assert (await v2.get("/v2/health/ready")).status_code == 200
    for path in (f"/v2/models/{MODEL}", f"/v2/models/{MODEL}/versions/1"):
        metadata = (await v2.get(path)).json()
        assert metadata["platform"] == "onnxruntime_onnx"
        assert metadata["versions"] == ["1"]
        assert metadata["inputs"] == [
            {"name": "input", "datatype": "FP32", "shape": [-1, 3, 224, 224]},
            {"name": "image", "datatype": "BYTES", "shape": [-1, 1]},
        ]
        assert metadata["outputs"] == [{"name": "logits", "datatype": "FP32", "shape": [-1, 1000]}]
        assert (await v2.get(f"{path}/ready")).status_code == 200
    config = (await v2.get(f"/v2/models/{MODEL}/config")).json()
    assert config["max_batch_size"] == 8
    assert config["input"] == [
        {
            "name": "input",
            "data_type": "TYPE_FP32",
            "format": "FORMAT_NCHW",
            "dims": [3, 224, 224],
            "optional": True,
        },
        {"name": "image", "data_type": "TYPE_STRING", "dims": [1], "optional": True},
    ]
    assert config["output"][0]["dims"] == [1000]
    assert config["output"][0]["label_filename"]
    index = (await v2.post("/v2/repository/index")).json()
    assert index == [{"name": MODEL, "version": "1", "state": "READY", "reason": ""}]
    only_ready = await v2.post("/v2/repository/index", json={"ready": True})
    assert only_ready.json() == index


async def test_metadata_can_list_the_tensor_alone(tiny_model: Path) -> None:
    """For clients that expect exactly one input (Triton's image_client.py)."""
    settings = settings_for(tiny_model, v2_metadata_inputs="tensor")
    async with serve(settings) as (_, client):
        metadata = (await client.get(f"/v2/models/{MODEL}")).json()
        assert [i["name"] for i in metadata["inputs"]] == ["input"]
        config = (await client.get(f"/v2/models/{MODEL}/config")).json()
        assert config["input"] == [
            {
                "name": "input",
                "data_type": "TYPE_FP32",
                "format": "FORMAT_NCHW",
                "dims": [3, 224, 224],
            }
        ]
        image = {
            "name": "image",
            "shape": [1],
            "datatype": "BYTES",
            "data": [base64.b64encode(JPEG).decode()],
        }
        assert (await client.post(INFER, json={"inputs": [image]})).status_code == 200


@pytest.mark.parametrize(
    ("path", "status", "fragment"),
    [
        ("/v2/models/nope", 404, "model_not_found"),
        ("/v2/models/nope/ready", 404, "model_not_found"),
        (f"/v2/models/{MODEL}/versions/2", 404, "has no version 2"),
        (f"/v2/models/{MODEL}/versions/abc/config", 404, "has no version 'abc'"),
        # Only ASCII digits are versions: U+00B2 made int() raise (500), U+0661 was version 1.
        (f"/v2/models/{MODEL}/versions/%C2%B2", 404, "has no version '\u00b2'"),
        (f"/v2/models/{MODEL}/versions/%D9%A1", 404, "has no version '\u0661'"),
        (f"/v2/models/{MODEL}/versions/{'1' * 5000}", 404, "has no version '111"),
        (f"/v2/models/{MODEL}%0A/ready", 404, "model_not_found"),
        (f"/v2/models/{'x' * 300}", 404, "model_not_found"),
        ("/v2/nothing/here", 404, "not_found"),
    ],
)
async def test_lookups_fail_in_the_protocols_shape(
    v2: httpx.AsyncClient, path: str, status: int, fragment: str
) -> None:
    assert_v2_error(await v2.get(path), status, fragment)


async def test_no_fastapi_default_bodies_under_v2(v2: httpx.AsyncClient) -> None:
    """405s and validation errors under /v2 speak the protocol too."""
    assert_v2_error(await v2.put(INFER), 405, "method_not_allowed")
    assert_v2_error(await v2.get(INFER), 405, "method_not_allowed")
    too_big = await v2.post(
        INFER, content=b"x" * 100, headers={"content-length": str(9 * 1024 * 1024)}
    )
    assert too_big.status_code in (400, 413)
    assert "detail" not in too_big.text


async def test_v2_and_classify_requests_share_batches(tiny_model: Path) -> None:
    settings = settings_for(tiny_model)
    held = ControlledEngine(load_engine(settings))
    async with serve(settings, lambda: held) as (app, client):
        held.gate.clear()
        held.started.clear()
        x = tensor(1)
        body, headers = binary_request({"inputs": [fp32_input(x)]}, x.tobytes())
        first = asyncio.ensure_future(classify_top5(client, JPEG))  # occupies the model
        await asyncio.to_thread(held.started.wait, 30)
        held.batch_sizes.clear()
        together = [
            asyncio.ensure_future(classify_top5(client, images.png())),
            asyncio.ensure_future(client.post(INFER, content=body, headers=headers)),
        ]
        pipeline = app.state.dataplane.models().find()
        await wait_until(lambda: pipeline.batcher.queue_depth == 2)
        held.gate.set()
        await first
        await together[0]
        assert (await together[1]).status_code == 200
        assert held.batch_sizes == [1, 2]


async def test_readiness_follows_loading_and_draining(tiny_model: Path) -> None:
    settings = settings_for(tiny_model)
    held = ControlledEngine(load_engine(settings))
    held.gate.clear()  # the warm-up cannot finish
    async with serve(settings, lambda: held, wait_ready=False) as (app, client):
        await asyncio.to_thread(held.started.wait, 30)
        for path in ("/v2/health/ready", f"/v2/models/{MODEL}/ready"):
            response = await client.get(path)
            assert_v2_error(response, 503, "not_ready")
            assert response.headers["retry-after"]
        assert (await client.get("/v2/health/live")).status_code == 200
        loading = await client.post("/v2/repository/index")
        assert loading.json()[0]["state"] == "LOADING"
        held.gate.set()
        await wait_until(lambda: app.state.dataplane.ready)
        assert (await client.get("/v2/health/ready")).json() == {"ready": True}
        app.state.dataplane.drain.begin(5)
        for path in ("/v2/health/ready", f"/v2/models/{MODEL}/ready"):
            assert_v2_error(await client.get(path), 503, "shutting_down")
        [draining] = (await client.post("/v2/repository/index")).json()
        assert (draining["state"], draining["reason"]) == (
            "UNAVAILABLE",
            "the service is shutting down",
        )
        assert (await client.post("/v2/repository/index", json={"ready": True})).json() == []
        x = tensor(1)
        body, headers = binary_request({"inputs": [fp32_input(x)]}, x.tobytes())
        assert_v2_error(await client.post(INFER, content=body, headers=headers), 503)


def errors_counted(metrics_text: str, code: str) -> float:
    for line in metrics_text.splitlines():
        if line.startswith(f'classifier_errors_total{{code="{code}"}} '):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def test_v2_errors_are_counted_with_the_v1_codes(v2: httpx.AsyncClient) -> None:
    before = (await v2.get("/metrics")).text
    chunk = length_prefixed(b"not an image")
    body, headers = binary_request(
        {
            "inputs": [
                {
                    "name": "image",
                    "shape": [1],
                    "datatype": "BYTES",
                    "parameters": {"binary_data_size": len(chunk)},
                }
            ]
        },
        chunk,
    )
    assert_v2_error(await v2.post(INFER, content=body, headers=headers), 400, "invalid_image")
    assert_v2_error(await v2.get("/v2/models/nope"), 404, "model_not_found")
    after = (await v2.get("/metrics")).text
    for code in ("invalid_image", "model_not_found"):
        assert errors_counted(after, code) == errors_counted(before, code) + 1


async def test_classification_k_follows_max_top_k_like_classify(tiny_model: Path) -> None:
    async with serve(settings_for(tiny_model, max_top_k=5)) as (_, client):
        x = tensor(1)
        for k, status in ((5, 200), (6, 400)):  # the protocol answers 400 where v1 has 422
            header = {
                "inputs": [fp32_input(x)],
                "outputs": [{"name": "logits", "parameters": {"classification": k}}],
            }
            body, headers = binary_request(header, x.tobytes())
            answer = await client.post(INFER, content=body, headers=headers)
            assert answer.status_code == status, answer.text
        assert_v2_error(answer, 400, "classification must be between 1 and 5, not 6")
        refused = await client.post("/classify?top_k=6", files={"file": JPEG})
        assert refused.status_code == 422
        assert "top_k must be between 1 and 5, not 6" in refused.json()["error"]["message"]


@pytest.mark.parametrize("binary", [False, True])
async def test_a_non_finite_output_is_an_error_never_invalid_json(
    v2: httpx.AsyncClient, binary: bool
) -> None:
    """Finite inputs near the float32 limit make the model's output NaN: the answer was
    `"data":[NaN,...]`, which JSON.parse refuses."""
    x = np.full((1, 3, 224, 224), 3e38, np.float32)
    header = {"inputs": [fp32_input(x)], "parameters": {"binary_data_output": binary}}
    body, headers = binary_request(header, x.tobytes())
    answer = await v2.post(INFER, content=body, headers=headers)
    json.loads(answer.text, parse_constant=lambda name: pytest.fail(f"bare {name} in JSON"))
    assert_v2_error(answer, 400, "non_finite_output")


async def test_statistics_extension_counts_inferences_and_batches(tiny_model: Path) -> None:
    """perf_analyzer reads these for its server-side breakdown (Triton's shape)."""
    async with serve(settings_for(tiny_model)) as (_, client):
        assert "statistics" in (await client.get("/v2")).json()["extensions"]
        x = tensor(2)
        body, headers = binary_request({"inputs": [fp32_input(x)]}, x.tobytes())
        assert (await client.post(INFER, content=body, headers=headers)).status_code == 200
        image = {"name": "image", "shape": [1], "datatype": "BYTES"}
        image["data"] = [base64.b64encode(JPEG).decode()]
        assert (await client.post(INFER, json={"inputs": [image]})).status_code == 200
        bad = {**image, "data": [base64.b64encode(b"not an image").decode()]}
        assert (await client.post(INFER, json={"inputs": [bad]})).status_code == 400
        every = (await client.get("/v2/models/stats")).json()
        for path in (f"/v2/models/{MODEL}/stats", f"/v2/models/{MODEL}/versions/1/stats"):
            assert (await client.get(path)).json() == every
        [stats] = every["model_stats"]
        assert (stats["name"], stats["version"]) == (MODEL, "1")
        assert stats["inference_count"] == 3
        figures = stats["inference_stats"]
        assert figures["success"]["count"] == figures["queue"]["count"] == 3
        assert figures["fail"]["count"] == 1
        assert figures["compute_infer"]["ns"] > 0
        assert figures["success"]["ns"] >= figures["compute_infer"]["ns"]
        batches = stats["batch_stats"]
        assert sum(b["batch_size"] * b["compute_infer"]["count"] for b in batches) == 3
        assert stats["execution_count"] == sum(b["compute_infer"]["count"] for b in batches)
        assert stats["last_inference"] > 0
        assert (await client.get("/v2/models/nope/stats")).status_code == 404
        assert (await client.get(f"/v2/models/{MODEL}/versions/2/stats")).status_code == 404


async def test_the_request_deadline_covers_decoding(tiny_model: Path) -> None:
    """v2 bodies used to be decoded before the deadline started. A JSON batch whose decoding
    alone takes longer than the deadline is answered 504 and never reaches the model (the
    parse holds the GIL, so the answer cannot come before the parse ends: what shows the
    deadline covered it is that no batch ran)."""
    x = tensor(8)
    body = json.dumps({"inputs": [fp32_input(x, binary=False)]}).encode()
    limits = DecodeLimits.for_model(64 * 1024 * 1024, max_batch_size=8, crop_size=224)
    started = time.perf_counter()
    decode_request(body, None, "", limits)
    decoding_s = time.perf_counter() - started
    settings = settings_for(tiny_model, request_timeout_s=decoding_s / 4)
    async with serve(settings) as (app, client):
        answer = await client.post(INFER, content=body, headers={"content-type": JSON_TYPE})
        assert_v2_error(answer, 504, "timeout")
        assert app.state.dataplane.find().statistics.execution_count == 0
