"""app/web/grpc/decode.py and encode.py without a server: messages in, plain data out."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from app.dataplane import inference
from app.dataplane.oip import MAX_BYTES_ELEMENTS, InferenceResponse, OutputTensor
from app.errors import InvalidParameter, MalformedRequest
from app.web.grpc import decode, encode
from app.web.grpc.stubs import grpc_service_pb2 as pb


def request_with(
    *tensors: tuple[str, str, list[int]], raw: list[bytes] | None = None
) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name="m")
    for name, datatype, shape in tensors:
        request.inputs.add(name=name, datatype=datatype, shape=shape)
    request.raw_input_contents.extend(raw or [])
    return request


def test_raw_fp32_is_read_without_a_copy_of_its_values() -> None:
    x = np.arange(12, dtype="<f4").reshape(1, 3, 2, 2)
    parsed = decode.decode_request(request_with(("input", "FP32", [1, 3, 2, 2]), raw=[x.tobytes()]))
    (tensor,) = parsed.inputs
    assert tensor.shape == (1, 3, 2, 2)
    assert tensor.array is not None
    np.testing.assert_array_equal(tensor.array.reshape(1, 3, 2, 2), x)


def test_typed_contents_of_each_family_decode_to_their_dtype() -> None:
    request = request_with(("a", "FP32", [2]), ("b", "INT64", [3]), ("c", "BOOL", [1]))
    request.inputs[0].contents.fp32_contents.extend([1.5, -2.0])
    request.inputs[1].contents.int64_contents.extend([1, 2, 2**40])
    request.inputs[2].contents.bool_contents.append(True)
    a, b, c = decode.decode_request(request).inputs
    assert a.array is not None
    assert a.array.dtype == np.float32
    assert a.array.tolist() == [1.5, -2.0]
    assert b.array is not None
    assert b.array.tolist() == [1, 2, 2**40]
    assert c.array is not None
    assert c.array.dtype == np.bool_


def test_bytes_come_raw_or_typed_alike() -> None:
    elements = [b"first", b"", b"\xff" * 3]
    raw = b"".join(struct.pack("<I", len(e)) + e for e in elements)
    from_raw = decode.decode_request(request_with(("image", "BYTES", [3]), raw=[raw]))
    typed = request_with(("image", "BYTES", [3, 1]))
    typed.inputs[0].contents.bytes_contents.extend(elements)
    assert from_raw.inputs[0].elements == elements
    assert decode.decode_request(typed).inputs[0].elements == elements


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (request_with(("input", "FP32", [1, 3]), raw=[b"\0" * 8]), "takes 12"),
        (request_with(("input", "FP32", [2]), raw=[b"\0" * 8, b"x"]), "2 raw_input_contents for 1"),
        (request_with(("image", "BYTES", [1]), raw=[b"\x09\0\0\0abc"]), "runs past the end"),
        (request_with(("image", "BYTES", [1]), raw=[b"\x01\0"]), "4-byte length"),
        (request_with(("image", "BYTES", [2]), raw=[b"\x01\0\0\0a"]), "needs 2"),
        (request_with(("input", "FP32", [-1, 3])), "negative dimension"),
        (request_with(("input", "FP32", [1] * 9)), "more than 8 dimensions"),
        (request_with(("input", "FP8", [1])), "unknown datatype"),
        (request_with(("input", "FP16", [1])), "only be sent as raw"),
        (request_with(("input", "FP32", [4])), "0 elements in contents.fp32_contents"),
        (request_with(("image", "BYTES", [MAX_BYTES_ELEMENTS + 1])), "at most 1024 BYTES"),
    ],
)
def test_what_disagrees_with_its_shape_is_refused_before_conversion(
    request_: pb.ModelInferRequest, message: str
) -> None:
    with pytest.raises(MalformedRequest, match=message):
        decode.decode_request(request_)


def test_unknown_parameters_are_refused_as_over_rest() -> None:
    request = request_with(("input", "FP32", [1]))
    request.parameters["priority"].int64_param = 1
    with pytest.raises(MalformedRequest, match="'priority': not a parameter"):
        decode.check(request)
    output = request_with(("input", "FP32", [1]), raw=[b"\0" * 4])
    output.outputs.add(name="logits").parameters["colour"].string_param = "blue"
    with pytest.raises(MalformedRequest, match="'colour'"):
        decode.decode_request(output)
    shm = request_with(("input", "FP32", [1]))
    shm.inputs[0].parameters["shared_memory_region"].string_param = "r"
    with pytest.raises(MalformedRequest, match="shared_memory_region"):
        decode.decode_request(shm)


def test_classification_and_timeout_parameters_are_read() -> None:
    request = request_with(("input", "FP32", [1]), raw=[b"\0" * 4])
    request.outputs.add(name="logits").parameters["classification"].int64_param = 3
    request.parameters["timeout"].int64_param = 250_000
    request.parameters["triton_enable_empty_final_response"].bool_param = True  # perf_analyzer
    decode.check(request)
    assert decode.timeout_s(request) == 0.25
    (output,) = decode.decode_request(request).outputs or []
    assert output.classification == 3
    request.outputs[0].parameters["classification"].string_param = "3"
    with pytest.raises(MalformedRequest, match="must be an integer"):
        decode.decode_request(request)


def test_counts_and_lengths_are_refused_before_admission() -> None:
    request = request_with(*[(f"in{i}", "FP32", [1]) for i in range(17)])
    with pytest.raises(MalformedRequest, match="at most 16 inputs"):
        decode.check(request)
    long_id = pb.ModelInferRequest(id="x" * 300)
    with pytest.raises(MalformedRequest, match="too long"):
        decode.check(long_id)


def test_responses_carry_every_output_as_raw_contents() -> None:
    rows = np.array([[0.5, -1.0]], dtype=np.float32)
    strings = inference.top_k_strings(rows, 1, ["cat", "dog"])
    response = InferenceResponse(
        "m",
        "2",
        [
            OutputTensor("logits", "FP32", (1, 2), binary=False, array=rows),
            OutputTensor("top", "BYTES", (1, 1), binary=False, elements=strings),
        ],
        id="abc",
    )
    message = encode.infer_response(response)
    assert (message.model_name, message.model_version, message.id) == ("m", "2", "abc")
    assert [list(o.shape) for o in message.outputs] == [[1, 2], [1, 1]]
    assert np.frombuffer(message.raw_output_contents[0], "<f4").tolist() == [0.5, -1.0]
    assert message.raw_output_contents[1] == struct.pack("<I", len(strings[0])) + strings[0]


def test_binary_data_size_must_be_the_raw_contents_size() -> None:
    """KServe's client repeats each raw input's size as a parameter."""
    request = request_with(("input", "FP32", [1]), raw=[b"\0" * 4])
    request.inputs[0].parameters["binary_data_size"].int64_param = 4
    assert decode.decode_request(request).inputs[0].shape == (1,)
    request.inputs[0].parameters["binary_data_size"].int64_param = 8
    with pytest.raises(MalformedRequest, match="binary_data_size 8 is not the size"):
        decode.decode_request(request)


def test_a_timeout_of_zero_means_none_as_in_triton() -> None:
    request = request_with(("input", "FP32", [1]), raw=[b"\0" * 4])
    request.parameters["timeout"].int64_param = 0
    assert decode.timeout_s(request) is None


def test_typed_numbers_other_than_fp32_are_refused_unconverted() -> None:
    request = request_with(("input", "INT64", [3]))
    request.inputs[0].contents.int64_contents.extend([1, 2, 3])
    assert decode.held_bytes(request, decode.typed_elements(request)) == request.ByteSize() + 24
    with pytest.raises(InvalidParameter, match="must be FP32"):
        decode.check(request)
