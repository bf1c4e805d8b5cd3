"""The protocol's inference request and response as plain data, whatever the transport.

A REST body (JSON plus binary tensor data) or a future gRPC message decodes into an
`InferenceRequest`; the data plane answers with an `InferenceResponse` that the same
transport encodes. Numeric tensors are numpy arrays, BYTES tensors lists of bytes.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from app.errors import MalformedRequest

# The protocol's numeric datatypes and their little-endian numpy equivalents (BYTES is
# variable-length and handled apart; BF16 has no numpy type and is not accepted).
NUMPY_TYPES: dict[str, str] = {
    "BOOL": "?",
    "UINT8": "u1",
    "UINT16": "<u2",
    "UINT32": "<u4",
    "UINT64": "<u8",
    "INT8": "i1",
    "INT16": "<i2",
    "INT32": "<i4",
    "INT64": "<i8",
    "FP16": "<f2",
    "FP32": "<f4",
    "FP64": "<f8",
}
BYTES = "BYTES"
MAX_DIMS = 8  # dimensions of a shape, and so nesting levels of JSON data
MAX_TENSORS = 16  # inputs, and outputs asked for, in one request
MAX_NAME_CHARS = 256  # a tensor's name, a request's id, the model named in its body
MAX_VERSION_CHARS = 64
MAX_BYTES_ELEMENTS = 1024  # per input: bounds the work a body of tiny elements can cause
# The JSON part of a request: big tensors and images go as binary data (a full batch of
# 224x224 FP32 tensors as JSON text stays well under this).
MAX_JSON_BYTES = 32 * 1024 * 1024
JSON_STRUCTURE_VALUES = 4096  # values beside the tensors' own: names, shapes, parameters


def split_bytes(name: str, data: bytes | memoryview) -> list[bytes]:
    """BYTES elements in their binary form (each a 4-byte little-endian length and the
    bytes: Triton's binary tensor data over REST, raw contents over gRPC), in order. Stops
    one element past MAX_BYTES_ELEMENTS (the caller refuses the count)."""
    view, position = memoryview(data), 0
    elements: list[bytes] = []
    while position < len(view):
        if position + 4 > len(view):
            raise MalformedRequest(
                f"input '{name}' element {len(elements)}: its 4-byte length runs past the end "
                "of the input's binary data"
            )
        (size,) = struct.unpack_from("<I", view, position)
        position += 4
        if size > len(view) - position:
            raise MalformedRequest(
                f"input '{name}' element {len(elements)}: length {size} runs past the end of "
                f"the input's binary data ({len(view) - position} bytes left)"
            )
        elements.append(bytes(view[position : position + size]))
        position += size
        if len(elements) > MAX_BYTES_ELEMENTS:
            break
    return elements


def join_bytes(elements: Sequence[bytes]) -> bytes:
    """BYTES elements in their binary form, as `split_bytes` reads them."""
    return b"".join(struct.pack("<I", len(e)) + e for e in elements)


def raw_bytes(array: NDArray[np.generic]) -> bytes:
    """A numeric tensor's binary form: little-endian, row-major."""
    return array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes()


@dataclass(frozen=True)
class DecodeLimits:
    """What decoding one request may cost, whatever its transport or encoding: a request
    never takes more memory than a fixed multiple of these."""

    body_bytes: int  # the body, inflated (DENSENET_MAX_V2_BODY_BYTES)
    json_values: int  # values (numbers, strings, lists) the JSON part may hold
    bytes_elements: int = MAX_BYTES_ELEMENTS

    @classmethod
    def for_model(cls, body_bytes: int, max_batch_size: int, crop_size: int) -> DecodeLimits:
        """A JSON part holds at most one full batch of the model's tensor (nested, one list
        per row of its last dimension), or the BYTES elements, and its structure: so parsed
        Python objects stay within about 60 bytes a value times this, whatever the body
        inflates to."""
        tensor_values = max_batch_size * 3 * crop_size * crop_size
        nested_lists = tensor_values // crop_size + max_batch_size * 4 + 1
        values = max(tensor_values + nested_lists, MAX_BYTES_ELEMENTS)
        return cls(body_bytes, values + JSON_STRUCTURE_VALUES)


@dataclass(frozen=True)
class InputTensor:
    """One request input: numeric data as a flat array, or BYTES elements in order."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    array: NDArray[np.generic] | None = None
    elements: list[bytes] | None = None


@dataclass(frozen=True)
class RequestedOutput:
    name: str
    binary: bool | None = None  # None: as the request's binary_data_output says
    classification: int | None = None  # top-K as "value:index:label" strings


@dataclass(frozen=True)
class InferenceRequest:
    inputs: list[InputTensor]
    outputs: list[RequestedOutput] | None = None  # None: every output
    id: str | None = None
    binary_data_output: bool = False
    model_name: str | None = None  # some clients repeat the URL's model in the body
    model_version: str | None = None


@dataclass(frozen=True)
class OutputTensor:
    name: str
    datatype: str
    shape: tuple[int, ...]
    binary: bool
    array: NDArray[np.generic] | None = None
    elements: list[bytes] | None = None


@dataclass(frozen=True)
class InferenceResponse:
    model_name: str
    model_version: str
    outputs: list[OutputTensor]
    id: str | None = None
