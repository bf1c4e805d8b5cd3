"""The gRPC front against a real `python -m app` process, through Triton's own gRPC client
(`tritonclient.grpc`, sync and asyncio) and a raw channel where a test needs the status
code and trailing metadata themselves."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.grpc.aio as grpcaio
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

from tests import hostile, images
from tests.conftest import load_engine, settings_for
from tests.server import Server, metric, running
from tests.test_protocol_v2 import assert_same_as_classify

pytestmark = pytest.mark.slow
MODEL = "densenet-tiny"
MESSAGE_LIMIT = 6 * 1024 * 1024
JPEG = images.jpeg()


@pytest.fixture(scope="module")
def server(tiny_model: Path) -> Iterator[Server]:
    with running(tiny_model, grpc_max_message_bytes=MESSAGE_LIMIT) as (process, url):
        process.url = url  # type: ignore[attr-defined]
        yield process


def url_of(process: Server) -> str:
    url: str = process.url  # type: ignore[attr-defined]
    return url


@pytest.fixture
def client(server: Server) -> Iterator[grpcclient.InferenceServerClient]:
    assert server.grpc_address is not None
    triton = grpcclient.InferenceServerClient(server.grpc_address)
    yield triton
    triton.close()


def fp32(x: np.ndarray[Any, Any]) -> grpcclient.InferInput:
    tensor = grpcclient.InferInput("input", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x)
    return tensor


def image_input(*files: bytes) -> grpcclient.InferInput:
    tensor = grpcclient.InferInput("image", [len(files)], "BYTES")
    tensor.set_data_from_numpy(np.array(files, dtype=np.object_))
    return tensor


def top(k: int = 5) -> list[grpcclient.InferRequestedOutput]:
    return [grpcclient.InferRequestedOutput("logits", class_count=k)]


def sample(n: int = 1) -> np.ndarray[Any, np.dtype[np.float32]]:
    return np.random.default_rng(7).normal(size=(n, 3, 224, 224)).astype(np.float32)


def test_health_metadata_config_statistics_and_index(
    client: grpcclient.InferenceServerClient, server: Server
) -> None:
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready(MODEL)
    assert client.is_model_ready(MODEL, "1")
    assert not client.is_model_ready("nope")
    assert not client.is_model_ready(MODEL, "2")
    server_metadata = client.get_server_metadata(as_json=True)
    assert server_metadata["name"] == "densenet-serve"
    assert "classification" in server_metadata["extensions"]
    rest = httpx.get(f"{url_of(server)}/v2/models/{MODEL}").json()
    metadata = client.get_model_metadata(MODEL, as_json=True)
    assert metadata["inputs"] == [
        {**i, "shape": [str(d) for d in i["shape"]]} for i in rest["inputs"]
    ]
    config = client.get_model_config(MODEL).config
    assert (config.max_batch_size, list(config.input[0].dims)) == (8, [3, 224, 224])
    assert config.input[1].name == "image"
    index = client.get_model_repository_index(as_json=True)
    assert index["models"] == [{"name": MODEL, "version": "1", "state": "READY"}]
    client.infer(MODEL, [fp32(sample())])
    stats = client.get_inference_statistics(MODEL, as_json=True)["model_stats"][0]
    rest_stats = httpx.get(f"{url_of(server)}/v2/models/{MODEL}/stats").json()["model_stats"][0]
    assert int(stats["inference_count"]) == rest_stats["inference_count"] >= 1
    everything = client.get_inference_statistics(as_json=True)["model_stats"]
    assert [s["name"] for s in everything] == [MODEL]


def test_fp32_tensor_agrees_with_the_engine(
    client: grpcclient.InferenceServerClient, tiny_model: Path
) -> None:
    x = sample(3)
    expected = load_engine(settings_for(tiny_model)).run(x)
    result = client.infer(MODEL, [fp32(x)], request_id="g-1", model_version="1")
    assert result.get_response().id == "g-1"
    assert result.get_response().model_version == "1"
    np.testing.assert_allclose(result.as_numpy("logits"), expected, rtol=1e-4, atol=1e-5)


def test_image_bytes_with_class_count_match_classify(
    client: grpcclient.InferenceServerClient, server: Server
) -> None:
    other = images.png(320, 200, seed=3)
    strings = client.infer(MODEL, [image_input(JPEG, other)], outputs=top()).as_numpy("logits")
    assert strings is not None
    assert strings.shape == (2, 5)
    for row, data in zip(strings, (JPEG, other), strict=True):
        response = httpx.post(
            f"{url_of(server)}/classify", content=data, headers={"content-type": "image/png"}
        )
        assert_same_as_classify([s.decode() for s in row], response.json()["predictions"])


def expect(call: Any, status: grpc.StatusCode, *fragments: str) -> str:
    with pytest.raises(InferenceServerException) as caught:
        call()
    message = caught.value.message()
    assert caught.value.status() == str(status), message
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    return message


def test_errors_arrive_as_client_exceptions_with_their_codes(
    client: grpcclient.InferenceServerClient,
) -> None:
    x, invalid = sample(), grpc.StatusCode.INVALID_ARGUMENT
    expect(lambda: client.infer("nope", [fp32(x)]), grpc.StatusCode.NOT_FOUND, "model_not_found")
    expect(lambda: client.infer(MODEL, [fp32(x)], "9"), grpc.StatusCode.NOT_FOUND, "version 9")
    small = x[:, :, :100, :100].copy()
    expect(lambda: client.infer(MODEL, [fp32(small)]), invalid, "[N,3,224,224]")
    wrong_type = grpcclient.InferInput("input", [1, 3, 224, 224], "FP64")
    wrong_type.set_data_from_numpy(x.astype(np.float64))
    expect(lambda: client.infer(MODEL, [wrong_type]), invalid, "must be FP32, not FP64")
    bad = image_input(JPEG, b"not an image at all")
    expect(lambda: client.infer(MODEL, [bad]), invalid, "invalid_image", "element 1")
    bomb = image_input(hostile.png_bomb())
    exhausted = grpc.StatusCode.RESOURCE_EXHAUSTED
    expect(lambda: client.infer(MODEL, [bomb]), exhausted, "image_too_large")
    huge = image_input(bytes(MESSAGE_LIMIT + 1))
    expect(lambda: client.infer(MODEL, [huge]), exhausted, str(MESSAGE_LIMIT))
    expect(lambda: client.infer(MODEL, [fp32(x)], outputs=top(10**9)), invalid, "1000")
    expect(lambda: client.infer(MODEL, [fp32(x)], priority=1), invalid, "'priority'")
    disabled = grpc.StatusCode.FAILED_PRECONDITION
    expect(lambda: client.load_model(MODEL), disabled, "model_control_disabled")
    expect(
        lambda: client.get_cuda_shared_memory_status(), grpc.StatusCode.UNIMPLEMENTED, "not_offered"
    )
    assert client.is_server_ready()


@pytest.fixture
async def aio(server: Server) -> AsyncIterator[grpcaio.InferenceServerClient]:
    assert server.grpc_address is not None
    triton = grpcaio.InferenceServerClient(server.grpc_address)
    yield triton
    await triton.close()


async def test_asyncio_client_makes_every_call(aio: grpcaio.InferenceServerClient) -> None:
    assert await aio.is_server_live()
    assert await aio.is_server_ready()
    assert await aio.is_model_ready(MODEL)
    assert (await aio.get_server_metadata()).name == "densenet-serve"
    assert (await aio.get_model_metadata(MODEL)).outputs[0].name == "logits"
    assert (await aio.get_model_config(MODEL)).config.max_batch_size == 8
    assert (await aio.get_model_repository_index()).models[0].state == "READY"
    tensor = await aio.infer(MODEL, [fp32(sample(2))])
    strings = await aio.infer(MODEL, [image_input(JPEG)], outputs=top(3))
    assert tensor.as_numpy("logits").shape == (2, 1000)  # type: ignore[union-attr]
    assert strings.as_numpy("logits").shape == (1, 3)  # type: ignore[union-attr]
    assert (await aio.get_inference_statistics(MODEL)).model_stats[0].inference_count >= 3
    with pytest.raises(InferenceServerException) as caught:
        await aio.infer("nope", [fp32(sample())])
    assert caught.value.status() == str(grpc.StatusCode.NOT_FOUND)


def stub(server: Server) -> tuple[grpc.Channel, service_pb2_grpc.GRPCInferenceServiceStub]:
    assert server.grpc_address is not None
    channel = grpc.insecure_channel(server.grpc_address)
    return channel, service_pb2_grpc.GRPCInferenceServiceStub(channel)


def test_typed_contents_as_kserve_sends_them(server: Server, tiny_model: Path) -> None:
    x = sample()
    request = service_pb2.ModelInferRequest(model_name=MODEL)
    tensor = request.inputs.add(name="input", datatype="FP32", shape=x.shape)
    tensor.contents.fp32_contents.extend(x.ravel().tolist())
    channel, inference = stub(server)
    with channel:
        response, call = inference.ModelInfer.with_call(request, timeout=30)
    logits = np.frombuffer(response.raw_output_contents[0], "<f4").reshape(1, 1000)
    expected = load_engine(settings_for(tiny_model)).run(x)
    np.testing.assert_allclose(logits, expected, rtol=1e-4, atol=1e-5)
    assert dict(call.trailing_metadata())["x-request-id"]  # every answer names its request


def test_request_ids_are_echoed_and_calls_counted(server: Server) -> None:
    channel, inference = stub(server)
    with channel:
        _, call = inference.ServerLive.with_call(
            service_pb2.ServerLiveRequest(), metadata=[("x-request-id", "trace-42")], timeout=10
        )
        with pytest.raises(grpc.RpcError) as caught:
            inference.ModelInfer(service_pb2.ModelInferRequest(model_name="nope"), timeout=10)
    assert dict(call.trailing_metadata())["x-request-id"] == "trace-42"
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND  # type: ignore[attr-defined]
    url = url_of(server)
    ok = metric(url, 'classifier_grpc_requests_total{code="OK",method="ServerLive"}')
    missing = metric(url, 'classifier_grpc_requests_total{code="NOT_FOUND",method="ModelInfer"}')
    assert (ok or 0) >= 1
    assert (missing or 0) >= 1
    assert (metric(url, 'classifier_errors_total{code="model_not_found"}') or 0) >= 1


def test_health_check_as_kubernetes_probes_ask_it(server: Server) -> None:
    from app.web.grpc.stubs import health_pb2, health_pb2_grpc  # the probe's own messages

    assert server.grpc_address is not None
    with grpc.insecure_channel(server.grpc_address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "inference.GRPCInferenceService"):
            answer = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
            assert answer.status == health_pb2.HealthCheckResponse.SERVING
        with pytest.raises(grpc.RpcError) as caught:
            health.Check(health_pb2.HealthCheckRequest(service="nope"), timeout=10)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND  # type: ignore[attr-defined]
