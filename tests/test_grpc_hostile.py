"""Hostile and odd gRPC calls against a real `python -m app`: bytes that are not a message,
raw contents that disagree with their shapes, BYTES length prefixes past the end,
messages over the limit, unknown parameters, huge K, and a stream of tiny requests. Each
gets a clean status (never UNKNOWN, never a traceback in the log) and the server stays
ready, its metrics' labels bounded."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest
from tritonclient.grpc import service_pb2

from tests.server import Server, rss_mb, running

pytestmark = pytest.mark.slow
MODEL = "densenet-tiny"
SERVICE = "/inference.GRPCInferenceService/"
MESSAGE_LIMIT = 2 * 1024 * 1024
TENSOR = np.zeros((1, 3, 224, 224), "<f4")
INVALID = grpc.StatusCode.INVALID_ARGUMENT


@dataclass(frozen=True)
class Call:
    name: str
    body: bytes
    status: grpc.StatusCode
    fragment: str = ""  # in the status message: the stable error code, or words of it
    method: str = "ModelInfer"


def infer(
    *inputs: tuple[str, str, list[int]], raw: list[bytes] | None = None, **fields: object
) -> service_pb2.ModelInferRequest:
    request = service_pb2.ModelInferRequest(**{"model_name": MODEL, **fields})  # type: ignore[arg-type]
    for name, datatype, shape in inputs:
        request.inputs.add(name=name, datatype=datatype, shape=shape)
    request.raw_input_contents.extend(raw or [])
    return request


def tensor(**fields: object) -> service_pb2.ModelInferRequest:
    return infer(("input", "FP32", [1, 3, 224, 224]), raw=[TENSOR.tobytes()], **fields)


def with_parameter(
    request: service_pb2.ModelInferRequest, where: str, name: str, value: int | str
) -> bytes:
    parameters = {
        "request": request.parameters,
        "input": request.inputs[0].parameters,
        "output": request.outputs[0].parameters if request.outputs else None,
    }[where]
    assert parameters is not None
    if isinstance(value, int):
        parameters[name].int64_param = value
    else:
        parameters[name].string_param = value
    return request.SerializeToString()


def classification(k: int) -> bytes:
    request = tensor()
    request.outputs.add(name="logits").parameters["classification"].int64_param = k
    return request.SerializeToString()


def typed_integers() -> bytes:
    """Small integers as varints: a message that parses to 8 times its size."""
    request = infer(("input", "INT64", [100_000]))
    request.inputs[0].contents.int64_contents.extend([1] * 100_000)
    return request.SerializeToString()


def typed_mismatch() -> bytes:
    request = infer(("input", "FP32", [2]))
    request.inputs[0].contents.int_contents.extend([1, 2])
    return request.SerializeToString()


def corpus() -> list[Call]:
    valid = tensor().SerializeToString()
    nan = np.full((1, 3, 224, 224), np.nan, "<f4").tobytes()
    prefix = struct.pack("<I", 1000) + b"short"
    utf8 = service_pb2.ModelInferRequest(model_name="x").SerializeToString().replace(b"x", b"\xff")
    many = [(("image", "BYTES", [1025]))]
    return [
        Call("not protobuf", b"\xff\xff\xff\xff", INVALID, "malformed_request"),
        Call("truncated message", valid[: len(valid) // 2], INVALID, "malformed_request"),
        Call("invalid UTF-8 in a string field", utf8, INVALID, "malformed_request"),
        Call(
            "not protobuf, metadata call",
            b"\x0a\xff",
            INVALID,
            "malformed_request",
            "ModelMetadata",
        ),
        Call("no inputs", infer().SerializeToString(), INVALID, "exactly one input"),
        Call(
            "raw size disagrees with shape",
            infer(("input", "FP32", [1, 3, 224, 224]), raw=[b"\0" * 12]).SerializeToString(),
            INVALID,
            "takes 602112",
        ),
        Call(
            "two raw contents for one input",
            infer(
                ("input", "FP32", [1, 3, 224, 224]), raw=[TENSOR.tobytes(), b""]
            ).SerializeToString(),
            INVALID,
            "2 raw_input_contents for 1",
        ),
        Call(
            "BYTES length past the end",
            infer(("image", "BYTES", [1]), raw=[prefix]).SerializeToString(),
            INVALID,
            "runs past the end",
        ),
        Call(
            "BYTES length cut short",
            infer(("image", "BYTES", [1]), raw=[b"\x05\0"]).SerializeToString(),
            INVALID,
            "4-byte length",
        ),
        Call(
            "BYTES count disagrees",
            infer(("image", "BYTES", [3]), raw=[struct.pack("<I", 1) + b"a"]).SerializeToString(),
            INVALID,
            "needs 3",
        ),
        Call("too many BYTES elements", infer(*many).SerializeToString(), INVALID, "at most 1024"),
        Call(
            "huge shape",
            infer(("input", "FP32", [2**62, 2**62]), raw=[b""]).SerializeToString(),
            INVALID,
            "takes",
        ),
        Call(
            "nine dimensions",
            infer(("input", "FP32", [1] * 9), raw=[b"\0" * 4]).SerializeToString(),
            INVALID,
            "dimensions",
        ),
        Call(
            "negative dimension",
            infer(("input", "FP32", [-1, 3, 224, 224]), raw=[b""]).SerializeToString(),
            INVALID,
            "negative",
        ),
        Call(
            "unknown datatype",
            infer(("input", "FP8", [1]), raw=[b"\0"]).SerializeToString(),
            INVALID,
            "unknown datatype",
        ),
        Call("typed contents in the wrong field", typed_mismatch(), INVALID, "fp32_contents"),
        Call("typed integers", typed_integers(), INVALID, "must be FP32"),
        Call(
            "NaN tensor",
            infer(("input", "FP32", [1, 3, 224, 224]), raw=[nan]).SerializeToString(),
            INVALID,
            "NaN",
        ),
        Call(
            "message over the limit",
            infer(("image", "BYTES", [1]), raw=[bytes(MESSAGE_LIMIT + 1)]).SerializeToString(),
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            str(MESSAGE_LIMIT),
        ),
        Call(
            "unknown request parameter",
            with_parameter(tensor(), "request", "priority", 1),
            INVALID,
            "'priority'",
        ),
        Call(
            "shared memory input",
            with_parameter(tensor(), "input", "shared_memory_region", "r"),
            INVALID,
            "shared_memory_region",
        ),
        Call(
            "unknown output parameter",
            with_parameter(
                infer(
                    ("input", "FP32", [1, 3, 224, 224]),
                    raw=[TENSOR.tobytes()],
                    outputs=[
                        service_pb2.ModelInferRequest.InferRequestedOutputTensor(name="logits")
                    ],
                ),
                "output",
                "colour",
                "blue",
            ),
            INVALID,
            "'colour'",
        ),
        Call("huge classification K", classification(2**62), INVALID, "invalid_parameter"),
        Call("negative classification K", classification(-1), INVALID, "invalid_parameter"),
        Call(
            "timeout parameter as text",
            with_parameter(tensor(), "request", "timeout", "soon"),
            INVALID,
            "'timeout'",
        ),
        Call(
            "model name of 10 KB",
            tensor(model_name="m" * 10_000).SerializeToString(),
            grpc.StatusCode.NOT_FOUND,
            "model_not_found",
        ),
        Call(
            "version that is not a number",
            tensor(model_version="latest").SerializeToString(),
            grpc.StatusCode.NOT_FOUND,
            "model_not_found",
        ),
        Call("id of 10 KB", tensor(id="i" * 10_000).SerializeToString(), INVALID, "too long"),
        Call(
            "metadata of an unknown model",
            service_pb2.ModelMetadataRequest(name="nope").SerializeToString(),
            grpc.StatusCode.NOT_FOUND,
            "model_not_found",
            "ModelMetadata",
        ),
        Call(
            "statistics of an unknown version",
            service_pb2.ModelStatisticsRequest(name=MODEL, version="7").SerializeToString(),
            grpc.StatusCode.NOT_FOUND,
            "model_not_found",
            "ModelStatistics",
        ),
        Call("a valid tensor", valid, grpc.StatusCode.OK),
    ]


@pytest.fixture(scope="module")
def server(tiny_model: Path) -> Iterator[tuple[Server, str]]:
    with running(tiny_model, grpc_max_message_bytes=MESSAGE_LIMIT) as (process, url):
        yield process, url


@pytest.fixture(scope="module")
def channel(server: tuple[Server, str]) -> Iterator[grpc.Channel]:
    process, _ = server
    assert process.grpc_address is not None
    with grpc.insecure_channel(process.grpc_address) as open_channel:
        yield open_channel


def send(channel: grpc.Channel, call: Call) -> tuple[grpc.StatusCode, str]:
    method = channel.unary_unary(SERVICE + call.method)
    try:
        method(call.body, timeout=30)
    except grpc.RpcError as error:
        return error.code(), error.details()  # type: ignore[attr-defined]
    return grpc.StatusCode.OK, ""


@pytest.mark.parametrize("call", corpus(), ids=lambda c: c.name)
def test_each_call_gets_a_clean_status(
    channel: grpc.Channel, server: tuple[Server, str], call: Call
) -> None:
    status, details = send(channel, call)
    assert status == call.status, details
    assert call.fragment in details, details
    process, url = server
    assert httpx.get(f"{url}/health/ready").status_code == 200
    assert "Traceback" not in process.output()


def test_a_stream_of_tiny_requests_leaves_the_server_ready(
    channel: grpc.Channel, server: tuple[Server, str]
) -> None:
    process, url = server
    tiny = [Call("empty", b"", INVALID), Call("garbage", b"\x08", INVALID)]
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda i: send(channel, tiny[i % 2]), range(500)))  # allocator warm
        before = rss_mb(process.pid)
        answers = list(pool.map(lambda i: send(channel, tiny[i % 2])[0], range(4000)))
    assert set(answers) == {INVALID}
    assert rss_mb(process.pid) - before < 32
    assert httpx.get(f"{url}/health/ready").status_code == 200
    assert "Traceback" not in process.output()


def test_methods_the_service_lacks_are_not_counted(
    channel: grpc.Channel, server: tuple[Server, str]
) -> None:
    status, _ = send(channel, Call("unknown method", b"", INVALID, method="NoSuchCall"))
    assert status == grpc.StatusCode.UNIMPLEMENTED
    _, url = server
    exposition = httpx.get(f"{url}/metrics").text
    assert "NoSuchCall" not in exposition
    methods = {
        line.split('method="')[1].split('"')[0]
        for line in exposition.splitlines()
        if line.startswith("classifier_grpc_requests_total{")
    }
    assert methods <= set(
        service_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"].methods_by_name
    )
