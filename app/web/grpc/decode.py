"""`inference.ModelInferRequest` (gRPC) -> `oip.InferenceRequest`, checked as the REST
decoder checks a body.

Each input's data comes either as `raw_input_contents` (one entry per input, in input
order: little-endian, row-major; BYTES elements each a 4-byte length and the bytes), which
Triton's client always sends, or typed in the input's `contents` (KServe's client sends
Python lists that way). Every count is checked against the shape before anything is
converted; typed contents are converted without an intermediate Python list.
Parameters this server does not know are refused, as over REST: one may change what the
client expects back.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import NDArray

from app.dataplane.oip import (
    BYTES,
    MAX_BYTES_ELEMENTS,
    MAX_DIMS,
    MAX_NAME_CHARS,
    MAX_TENSORS,
    MAX_VERSION_CHARS,
    NUMPY_TYPES,
    InferenceRequest,
    InputTensor,
    RequestedOutput,
    split_bytes,
)
from app.errors import InvalidParameter, MalformedRequest
from app.web.grpc.stubs.grpc_service_pb2 import InferParameter, ModelInferRequest

# Where each datatype's typed contents go (InferTensorContents); FP16 has none (raw only).
CONTENTS_FIELDS = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    BYTES: "bytes_contents",
}
# Datatypes with no typed contents field: refused where they are read (raw only).
NOT_TYPED = ("FP16", "BF16")
# Typed contents this many elements or more are converted off the event loop.
OFF_LOOP_ELEMENTS = 64 * 1024
# Request parameters understood: Triton's `timeout` (microseconds), honoured as a deadline;
# `triton_enable_empty_final_response`, which perf_analyzer puts on every gRPC call and
# which only means something to streaming calls of decoupled models (none here): ignored.
REQUEST_PARAMETERS = frozenset({"timeout", "triton_enable_empty_final_response"})
# Input parameters: `binary_data_size` (KServe's client repeats its raw contents' size),
# checked against them. Shared memory's are refused: this server offers none.
INPUT_PARAMETERS = frozenset({"binary_data_size"})
# Output parameters: the classification extension's K; `binary_data` means nothing here
# (outputs are always raw contents) and is accepted for clients that send it anyway.
OUTPUT_PARAMETERS = frozenset({"classification", "binary_data"})


def _value(parameter: InferParameter) -> Any:
    choice = parameter.WhichOneof("parameter_choice")
    return None if choice is None else getattr(parameter, choice)


def _refuse_unknown(where: str, names: Any, known: frozenset[str]) -> None:
    unknown = sorted(set(names) - known)
    if unknown:
        shown = ", ".join(repr(n[:64]) for n in unknown[:3])
        raise MalformedRequest(
            f"{where} parameter {shown}: not a parameter this server understands"
        )


def _count(name: str, shape: tuple[int, ...]) -> int:
    if len(shape) > MAX_DIMS:
        raise MalformedRequest(f"input '{name}': shape has more than {MAX_DIMS} dimensions")
    if any(dim < 0 for dim in shape):
        raise MalformedRequest(f"input '{name}': shape {list(shape)} has a negative dimension")
    return math.prod(shape)


def _typed(tensor: Any, name: str, datatype: str, count: int) -> InputTensor:
    field = CONTENTS_FIELDS.get(datatype)
    shape = tuple(tensor.shape)
    if field is None:
        raise MalformedRequest(f"input '{name}': {datatype} data can only be sent as raw contents")
    values = getattr(tensor.contents, field)
    if len(values) != count:
        raise MalformedRequest(
            f"input '{name}' has {len(values)} elements in contents.{field} but shape "
            f"{list(shape)} needs {count}"
        )
    if datatype == BYTES:
        return InputTensor(name, BYTES, shape, elements=list(values))
    array: NDArray[Any] = np.fromiter(values, np.dtype(NUMPY_TYPES[datatype]), count)
    return InputTensor(name, datatype, shape, array=array)


def _raw(name: str, datatype: str, shape: tuple[int, ...], count: int, raw: bytes) -> InputTensor:
    if datatype == BYTES:
        elements = split_bytes(name, raw)
        if len(elements) != count:
            raise MalformedRequest(
                f"input '{name}' has {len(elements)} BYTES elements in its raw contents but "
                f"shape {list(shape)} needs {count}"
            )
        return InputTensor(name, BYTES, shape, elements=elements)
    dtype = np.dtype(NUMPY_TYPES[datatype])
    if len(raw) != count * dtype.itemsize:
        raise MalformedRequest(
            f"input '{name}': its raw contents are {len(raw)} bytes but shape {list(shape)} of "
            f"{datatype} takes {count * dtype.itemsize}"
        )
    return InputTensor(name, datatype, shape, array=np.frombuffer(raw, dtype, count))


def _inputs(request: ModelInferRequest) -> list[InputTensor]:
    raw = request.raw_input_contents
    if raw and len(raw) != len(request.inputs):
        raise MalformedRequest(
            f"{len(raw)} raw_input_contents for {len(request.inputs)} inputs; send one per "
            "input, in order, or none (typed contents)"
        )
    inputs = []
    for i, tensor in enumerate(request.inputs):
        name, datatype = tensor.name[:MAX_NAME_CHARS], tensor.datatype
        _refuse_unknown(f"input '{name}'", tensor.parameters, INPUT_PARAMETERS)
        if datatype != BYTES and datatype not in NUMPY_TYPES:
            raise MalformedRequest(f"input '{name}': unknown datatype '{datatype[:16]}'")
        count = _count(name, tuple(tensor.shape))
        if datatype == BYTES and count > MAX_BYTES_ELEMENTS:
            raise MalformedRequest(f"input '{name}': at most {MAX_BYTES_ELEMENTS} BYTES elements")
        if "binary_data_size" in tensor.parameters:
            size = _value(tensor.parameters["binary_data_size"])
            if not raw or size != len(raw[i]):
                raise MalformedRequest(
                    f"input '{name}': binary_data_size {size!r:.32} is not the size of its "
                    "raw contents"
                )
        if raw:
            inputs.append(_raw(name, datatype, tuple(tensor.shape), count, raw[i]))
        else:
            inputs.append(_typed(tensor, name, datatype, count))
    return inputs


def _outputs(request: ModelInferRequest) -> list[RequestedOutput] | None:
    if not request.outputs:
        return None
    outputs = []
    for output in request.outputs:
        name = output.name[:MAX_NAME_CHARS]
        _refuse_unknown(f"output '{name}'", output.parameters, OUTPUT_PARAMETERS)
        k = None
        if "classification" in output.parameters:
            k = _value(output.parameters["classification"])
            if isinstance(k, bool) or not isinstance(k, int):
                raise MalformedRequest(f"output '{name}': classification must be an integer")
        outputs.append(RequestedOutput(name, classification=k))
    return outputs


def timeout_s(request: ModelInferRequest) -> float | None:
    """The request's own `timeout` parameter (microseconds), in seconds; 0 means none, as
    in Triton."""
    if "timeout" not in request.parameters:
        return None
    value = _value(request.parameters["timeout"])
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise MalformedRequest("parameter 'timeout' must be a non-negative integer (microseconds)")
    return value / 1e6 if value else None


def check(request: ModelInferRequest) -> float | None:
    """What is refused before the request is admitted: counts, names, and typed numbers
    other than FP32 (no model input here takes them: they are not converted at all).
    Returns the request's own timeout (`timeout_s`)."""
    if len(request.inputs) > MAX_TENSORS or len(request.outputs) > MAX_TENSORS:
        raise MalformedRequest(f"at most {MAX_TENSORS} inputs and {MAX_TENSORS} outputs")
    if not request.raw_input_contents:
        for tensor in request.inputs:
            if tensor.datatype not in ("FP32", BYTES, *NOT_TYPED):
                raise InvalidParameter(
                    f"input '{tensor.name[:MAX_NAME_CHARS]}' must be FP32 (the model's tensor) "
                    f"or BYTES (encoded images), not {tensor.datatype[:16]}"
                )
    if len(request.id) > MAX_NAME_CHARS or len(request.model_version) > MAX_VERSION_CHARS:
        raise MalformedRequest("the request id or model version is too long")
    _refuse_unknown("request", request.parameters, REQUEST_PARAMETERS)
    return timeout_s(request)


def held_bytes(request: ModelInferRequest, typed: int) -> int:
    """What the parsed message holds in memory, at most: its size on the wire, plus up to
    8 bytes for each of its `typed` numbers (protobuf keeps a repeated varint in 4 or 8
    bytes, so a message of small integers parses to up to 8 times its size)."""
    return request.ByteSize() + 8 * typed


def typed_elements(request: ModelInferRequest) -> int:
    """Elements sent as typed contents: how much converting them costs."""
    if request.raw_input_contents:
        return 0
    total = 0
    for tensor in request.inputs:
        field = CONTENTS_FIELDS.get(tensor.datatype)
        total += len(getattr(tensor.contents, field)) if field else 0
    return total


def decode_request(request: ModelInferRequest) -> InferenceRequest:
    """The request as the data plane takes it (after `check`)."""
    return InferenceRequest(
        inputs=_inputs(request),
        outputs=_outputs(request),
        id=request.id or None,
        model_name=request.model_name or None,
        model_version=request.model_version or None,
    )
