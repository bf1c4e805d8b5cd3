"""HTTP/REST request bodies of the Open Inference Protocol -> `tensors.InferenceRequest`.

A request body is the inference request JSON object (KServe's v2 protocol, "Inference
Request JSON Object"), optionally followed by binary tensor data (Triton's "Binary Tensor
Data Extension"): then `Inference-Header-Content-Length` gives the JSON's size, and each
input carrying `binary_data_size` takes that many bytes, in input order, little-endian,
row-major; BYTES elements are each a 4-byte little-endian length and the bytes. Binary
numeric tensors are read with `np.frombuffer` (no copy, no Python lists). In JSON, BYTES
elements are base64 strings, since the only BYTES input served is encoded images.
gzip and deflate request bodies (as tritonclient sends them) are inflated within the
route's body limit; other encodings get 415.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import math
import zlib
from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import NDArray
from pydantic import ValidationError

from app.dataplane.oip import (
    BYTES,
    MAX_BYTES_ELEMENTS,
    MAX_DIMS,
    MAX_JSON_BYTES,
    NUMPY_TYPES,
    DecodeLimits,
    InferenceRequest,
    InputTensor,
    RequestedOutput,
    split_bytes,
)
from app.errors import MalformedRequest, PayloadTooLarge, UnsupportedMediaType
from app.names import parse_count
from app.web.v2.rest_schema import Header, Input, problems

OFF_LOOP_BYTES = 256 * 1024  # JSON this large (or any compressed body) is parsed off the loop
INFLATE_CHUNK_BYTES = 1024 * 1024
Hold = Callable[[int], None]  # takes bytes from the upload budget (or refuses them)


def _inflate(body: bytes, encoding: str, limit: int, hold: Hold) -> bytes | bytearray:
    """The body inflated, a chunk at a time: each chunk is held in the upload budget as it
    is made, and past `limit` inflating stops."""
    if encoding in ("", "identity"):
        return body
    if encoding not in ("gzip", "deflate"):
        raise UnsupportedMediaType(
            f"Content-Encoding '{encoding[:32]}' is not supported; send gzip, deflate or none"
        )
    inflater = zlib.decompressobj(32 + zlib.MAX_WBITS)  # zlib or gzip framing
    data, pending = bytearray(), body
    while True:
        try:
            piece = inflater.decompress(pending, INFLATE_CHUNK_BYTES)
        except zlib.error:
            raise MalformedRequest(f"the body is not valid {encoding} data") from None
        pending = inflater.unconsumed_tail
        if len(data) + len(piece) > limit:
            raise PayloadTooLarge(f"the {encoding} body inflates past the limit of {limit} bytes")
        hold(len(piece))
        data += piece
        if inflater.eof or not (piece or pending):
            break
    if not inflater.eof or inflater.unused_data:
        raise MalformedRequest(f"the {encoding} body is truncated or has trailing bytes")
    return data


def _json_size(declared: str | None, body_size: int) -> int:
    if declared is None:
        return body_size
    size = parse_count(declared.strip())
    size = -1 if size is None else size
    if not 0 < size <= body_size:
        raise MalformedRequest(
            f"Inference-Header-Content-Length is '{declared[:32]}' but the body is "
            f"{body_size} bytes; it must be the JSON header's size, 1..{body_size}"
        )
    return size


def _flat(name: str, data: Any) -> list[Any]:
    """The elements of (nested) JSON data in order, nested at most MAX_DIMS deep."""
    flat: list[Any] = []
    stack: list[tuple[Any, int]] = [(data, 0)]
    while stack:
        item, depth = stack.pop()
        if not isinstance(item, list):
            flat.append(item)
        elif depth >= MAX_DIMS:
            raise MalformedRequest(f"input '{name}': data nests deeper than {MAX_DIMS} levels")
        else:
            stack.extend((element, depth + 1) for element in reversed(item))
    return flat


def _bytes_json(name: str, data: Any) -> list[bytes]:
    elements = []
    for i, element in enumerate(_flat(name, data)):
        try:
            elements.append(base64.b64decode(element, validate=True))
        except (binascii.Error, TypeError, ValueError):
            raise MalformedRequest(
                f"input '{name}' element {i} is not a base64 string (BYTES in JSON are base64)"
            ) from None
    return elements


def _numbers_json(raw: Input, dtype: np.dtype[Any]) -> NDArray[Any]:
    try:
        array: NDArray[Any] | None = np.asarray(raw.data)
    except (ValueError, TypeError):  # ragged lists
        array = None
    allowed = "b" if dtype.kind == "b" else "iuf"
    if array is None or array.dtype.kind not in allowed:
        kind = "booleans" if dtype.kind == "b" else "numbers"
        raise MalformedRequest(f"input '{raw.name}': data must be a (nested) list of {kind}")
    with np.errstate(over="ignore", invalid="ignore"):  # out of range: refused later
        return array.astype(dtype).reshape(-1)


def _input(raw: Input, binary: memoryview, offset: int) -> tuple[InputTensor, int]:
    """One input, and where the next input's binary data starts."""
    name, shape = raw.name, tuple(raw.shape)
    if any(dim < 0 for dim in shape):
        raise MalformedRequest(f"input '{name}': shape {list(shape)} has a negative dimension")
    count = math.prod(shape)
    size = raw.parameters.binary_data_size if raw.parameters else None
    if (size is None) == (raw.data is None):
        raise MalformedRequest(f"input '{name}': send either 'data' or binary_data_size")
    if size is not None and size > len(binary) - offset:
        raise MalformedRequest(
            f"input '{name}': binary_data_size {size} runs past the end of the body "
            f"({len(binary) - offset} bytes of binary data left)"
        )
    if raw.datatype == BYTES:
        if count > MAX_BYTES_ELEMENTS:
            raise MalformedRequest(f"input '{name}': at most {MAX_BYTES_ELEMENTS} BYTES elements")
        if size is None:
            elements = _bytes_json(name, raw.data)
        else:
            elements = split_bytes(name, binary[offset : offset + size])
        found = len(elements)
        tensor = InputTensor(name, BYTES, shape, elements=elements)
    elif raw.datatype in NUMPY_TYPES:
        dtype = np.dtype(NUMPY_TYPES[raw.datatype])
        if size is not None and size != count * dtype.itemsize:
            raise MalformedRequest(
                f"input '{name}': binary_data_size is {size} bytes but shape {list(shape)} of "
                f"{raw.datatype} takes {count * dtype.itemsize}"
            )
        if size is None:
            array = _numbers_json(raw, dtype)
        else:
            array = np.frombuffer(binary, dtype, count, offset)
        found = array.size
        tensor = InputTensor(name, raw.datatype, shape, array=array)
    else:
        raise MalformedRequest(f"input '{name}': unknown datatype '{raw.datatype}'")
    if found != count:
        raise MalformedRequest(
            f"input '{name}' has {found} elements but shape {list(shape)} needs {count}"
        )
    return tensor, offset + (size or 0)


def _check_json_values(data: bytes | bytearray, json_size: int, limit: int) -> None:
    """Count the JSON part's values from its bytes before parsing it: every array element
    but the first follows a comma, every array and object opens with a bracket. Parsed,
    each value is a Python object, so this bounds the parse's memory."""
    values = sum(data.count(mark, 0, json_size) for mark in (b",", b"[", b"{"))
    if values > limit:
        raise PayloadTooLarge(
            f"the JSON part of the request holds about {values} values; this model's inputs "
            f"need at most {limit} (send large tensors and images as binary tensor data)"
        )


def decode_request(
    body: bytes,
    header_length: str | None,
    encoding: str,
    limits: DecodeLimits,
    hold: Hold = lambda _: None,
) -> InferenceRequest:
    """A request body (JSON, maybe followed by binary tensor data) -> InferenceRequest.
    Every count is checked before anything is converted; `hold` takes an inflated body's
    bytes from the upload budget."""
    data = _inflate(body, encoding, limits.body_bytes, hold)
    json_size = _json_size(header_length, len(data))
    if json_size > MAX_JSON_BYTES:
        raise PayloadTooLarge(
            f"the JSON part of the request is {json_size} bytes; the limit is {MAX_JSON_BYTES} "
            "(send large tensors and images as binary tensor data)"
        )
    _check_json_values(data, json_size, limits.json_values)
    try:
        header = Header.model_validate_json(data[:json_size])
    except ValidationError as exc:
        raise MalformedRequest(f"invalid inference request: {problems(exc)}") from None
    binary, offset, inputs = memoryview(data)[json_size:], 0, []
    for raw in header.inputs:
        tensor, offset = _input(raw, binary, offset)
        inputs.append(tensor)
    if offset != len(binary):
        raise MalformedRequest(
            f"the body has {len(binary)} bytes of binary data after the JSON header but the "
            f"inputs' binary_data_size add up to {offset}"
        )
    outputs = None
    if header.outputs is not None:
        outputs = [
            RequestedOutput(o.name, p.binary_data, p.classification)
            if (p := o.parameters)
            else RequestedOutput(o.name)
            for o in header.outputs
        ]
    binary_output = header.parameters.binary_data_output if header.parameters else False
    return InferenceRequest(
        inputs, outputs, header.id, binary_output, header.model_name, header.model_version
    )


async def decode_request_off_loop(
    body: bytes, header_length: str | None, encoding: str, limits: DecodeLimits, hold: Hold
) -> InferenceRequest:
    """`decode_request`, on a thread for large JSON and compressed bodies, so that one
    request does not hold up the event loop."""
    json_size = parse_count(header_length.strip()) if header_length else None
    args = (body, header_length, encoding, limits, hold)
    if encoding not in ("", "identity") or (json_size or len(body)) > OFF_LOOP_BYTES:
        return await asyncio.to_thread(decode_request, *args)
    return decode_request(*args)
