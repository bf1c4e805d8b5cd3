"""Hostile and odd Open Inference Protocol (v2) requests, made by code: malformed JSON,
lying `Inference-Header-Content-Length` and `binary_data_size`, BYTES length prefixes past
the end, base64 garbage, missing, extra and unknown inputs, unknown parameters, inflating
bodies. Each must get a 4xx in the protocol's shape (or a 200 for the valid ones);
tests/hostile.py adds them to its corpus."""

from __future__ import annotations

import base64
import gzip
import json
import struct
import zlib
from functools import cache
from typing import Any

import numpy as np

from tests import images
from tests.hostile import Case

INFER = "/v2/models/densenet-tiny/infer"
BODY_LIMIT = 8 * 1024 * 1024  # the max_v2_body_bytes tests/hostile.SETTINGS sets
TENSOR = np.zeros((1, 3, 224, 224), np.float32)
JSON = "application/json"


def _fp32(parameters: dict[str, Any] | None = None, **fields: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": "input", "shape": [1, 3, 224, 224], "datatype": "FP32"}
    entry["parameters"] = {"binary_data_size": TENSOR.nbytes, **(parameters or {})}
    return {**entry, **fields}


def _image(data: list[str] | None = None, size: int | None = None, **fields: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": "image", "shape": [1], "datatype": "BYTES"}
    if size is not None:
        entry["parameters"] = {"binary_data_size": size}
    if data is not None:
        entry["data"] = data
    return {**entry, **fields}


def _binary(
    name: str, status: int, code: str | None, header: dict[str, Any], binary: bytes, **kw: Any
) -> Case:
    """A JSON header followed by binary data, with the header's true length unless given."""
    head = json.dumps(header).encode()
    length = kw.pop("header_length", str(len(head)))
    headers = {} if length is None else {"inference-header-content-length": length}
    headers.update(kw.pop("headers", {}))
    content = head + binary
    if (compress := kw.pop("compress", None)) is not None:
        content = compress(content)
    return Case(name, status, code, content=content, path=INFER, headers=headers, **kw)


def _json(name: str, status: int, code: str | None, body: Any, **kw: Any) -> Case:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return Case(name, status, code, content=content, content_type=JSON, path=INFER, **kw)


def _prefixed(*elements: bytes) -> bytes:
    return b"".join(struct.pack("<I", len(e)) + e for e in elements)


@cache
def _inflating_body() -> bytes:
    """A gzip body of 25 kB that inflates past the body limit."""
    return gzip.compress(b"\x00" * (BODY_LIMIT + 1024), compresslevel=9)


def _valid() -> list[Case]:
    jpeg, b64 = images.jpeg(), base64.b64encode(images.png()).decode()
    top5 = [{"name": "logits", "parameters": {"classification": 5}}]
    raw = TENSOR.tobytes()
    return [
        _binary("v2_fp32_binary", 200, None, {"inputs": [_fp32()]}, raw),
        _binary(
            "v2_image_binary",
            200,
            None,
            {"inputs": [_image(size=len(jpeg) + 4)], "outputs": top5},
            _prefixed(jpeg),
        ),
        _json("v2_image_base64_json", 200, None, {"inputs": [_image([b64])], "outputs": top5}),
        _binary(
            "v2_fp32_deflate",
            200,
            None,
            {"inputs": [_fp32()]},
            raw,
            headers={"content-encoding": "deflate"},
            compress=zlib.compress,
        ),
    ]


def _framing() -> list[Case]:
    """The body's framing lies: JSON, header length, binary sizes, encodings."""
    raw, header = TENSOR.tobytes(), {"inputs": [_fp32()]}
    bad = "malformed_request"
    return [
        _json("v2_malformed_json", 400, bad, b'{"inputs": [{"name": "input", '),
        _json("v2_not_json", 400, bad, b"hello, I am a tensor"),
        _json("v2_json_array", 400, bad, b"[1, 2, 3]"),
        _json("v2_empty_body", 400, bad, b""),
        _binary("v2_header_length_past_end", 400, bad, header, raw, header_length="99999999"),
        _binary("v2_header_length_not_a_number", 400, bad, header, raw, header_length="12abc"),
        _binary("v2_header_length_zero", 400, bad, header, raw, header_length="0"),
        # int() of 5,000 digits raises ValueError (Python's digit limit): never a 500.
        _binary("v2_header_length_5000_digits", 400, bad, header, raw, header_length="9" * 5000),
        _binary(
            "v2_header_length_unicode_digits",
            400,
            bad,
            header,
            raw,
            header_length="\u00b2".encode("latin-1"),
        ),
        _binary("v2_header_length_cuts_the_json", 400, bad, header, raw, header_length="20"),
        _binary("v2_binary_size_disagrees_with_shape", 400, bad, {"inputs": [_fp32()]}, raw[:-4]),
        _binary(
            "v2_binary_size_past_end",
            400,
            bad,
            {"inputs": [_fp32({"binary_data_size": TENSOR.nbytes * 2})]},
            raw,
        ),
        _binary(
            "v2_huge_declared_binary_size",
            400,
            bad,
            {"inputs": [_fp32({"binary_data_size": 2**62})]},
            raw,
        ),
        _binary("v2_trailing_binary_bytes", 400, bad, header, raw + b"\x00" * 16),
        _binary("v2_binary_without_header_length", 400, bad, header, raw, header_length=None),
        _binary(
            "v2_bytes_length_prefix_past_end",
            400,
            bad,
            {"inputs": [_image(size=14)]},
            struct.pack("<I", 10**6) + b"0123456789",
        ),
        _binary(
            "v2_bytes_truncated_length_prefix",
            400,
            bad,
            {"inputs": [_image(size=2)]},
            b"\x05\x00",
        ),
        _binary(
            "v2_bytes_more_elements_than_shape",
            400,
            bad,
            {"inputs": [_image(size=10)]},
            _prefixed(b"a", b"b"),
        ),
        _json("v2_base64_garbage", 400, bad, {"inputs": [_image(["not base64 at all!"])]}),
        _json("v2_base64_not_a_string", 400, bad, {"inputs": [_image([12345])]}),
        _binary("v2_gzip_garbage", 400, bad, header, raw, headers={"content-encoding": "gzip"}),
        _binary(
            "v2_unsupported_encoding",
            415,
            "unsupported_media_type",
            header,
            raw,
            headers={"content-encoding": "br"},
        ),
        Case(
            "v2_gzip_inflates_past_limit",
            413,
            "payload_too_large",
            content=_inflating_body(),
            content_type=JSON,
            path=INFER,
            headers={"content-encoding": "gzip"},
        ),
        _json("v2_body_over_limit", 413, "payload_too_large", b"{" + b" " * BODY_LIMIT + b"}"),
    ]


def _contents() -> list[Case]:
    """Well-framed requests that do not fit the model or the protocol's parameters."""
    raw, invalid, bad = TENSOR.tobytes(), "invalid_parameter", "malformed_request"
    nan = np.full_like(TENSOR, np.nan).tobytes()
    data = {"name": "input", "shape": [1, 3, 224, 224], "datatype": "FP32"}
    return [
        _json("v2_missing_inputs", 400, invalid, {"inputs": []}),
        _json("v2_no_inputs_field", 400, bad, {"outputs": [{"name": "logits"}]}),
        _binary(
            "v2_extra_inputs",
            400,
            invalid,
            {"inputs": [_fp32(), _fp32(name="second")]},
            raw + raw,
        ),
        _binary("v2_unknown_input_name", 400, invalid, {"inputs": [_fp32(name="pixels")]}, raw),
        _binary(
            "v2_unknown_request_parameter",
            400,
            bad,
            {"inputs": [_fp32()], "parameters": {"priority": 1}},
            raw,
        ),
        _binary("v2_unknown_input_parameter", 400, bad, {"inputs": [_fp32({"scale": 2})]}, raw),
        _binary(
            "v2_unknown_output_parameter",
            400,
            bad,
            {"inputs": [_fp32()], "outputs": [{"name": "logits", "parameters": {"top_p": 1}}]},
            raw,
        ),
        _binary("v2_unknown_field", 400, bad, {"inputs": [_fp32()], "priority": 1}, raw),
        _binary(
            "v2_unknown_output_name",
            400,
            invalid,
            {"inputs": [_fp32()], "outputs": [{"name": "probabilities"}]},
            raw,
        ),
        *(
            _binary(
                f"v2_classification_{label}",
                400,
                bad if label == "text" else invalid,
                {"inputs": [_fp32()], "outputs": [{"name": "logits", "parameters": value}]},
                raw,
            )
            for label, value in [
                ("zero", {"classification": 0}),
                ("above_classes", {"classification": 1001}),
                ("text", {"classification": "5"}),
            ]
        ),
        _json(
            "v2_wrong_datatype",
            400,
            invalid,
            {"inputs": [{**data, "datatype": "INT64", "shape": [1, 1], "data": [1]}]},
        ),
        _json(
            "v2_unknown_datatype", 400, bad, {"inputs": [{**data, "datatype": "FP8", "data": [1]}]}
        ),
        _json(
            "v2_wrong_shape",
            400,
            invalid,
            {"inputs": [{**data, "shape": [1, 3, 8, 8], "data": [0.0] * 192}]},
        ),
        _json("v2_element_count_mismatch", 400, bad, {"inputs": [{**data, "data": [1.0, 2.0]}]}),
        _json(
            "v2_negative_dimension",
            400,
            bad,
            {"inputs": [{**data, "shape": [-1, 3, 224, 224], "data": [1.0]}]},
        ),
        _json("v2_ragged_json", 400, bad, {"inputs": [{**data, "data": [[1.0], [1.0, 2.0]]}]}),
        _json("v2_strings_as_fp32", 400, bad, {"inputs": [{**data, "shape": [1], "data": ["1"]}]}),
        _binary("v2_nan_values", 400, invalid, {"inputs": [_fp32()]}, nan),
        _binary(
            "v2_batch_over_max_batch_size",
            400,
            invalid,
            {"inputs": [_fp32({"binary_data_size": TENSOR.nbytes * 9}, shape=[9, 3, 224, 224])]},
            raw * 9,
        ),
        _binary(
            "v2_not_an_image",
            400,
            "invalid_image",
            {"inputs": [_image(size=9)]},
            _prefixed(b"hello"),
        ),
        _binary(
            "v2_empty_image", 400, "invalid_image", {"inputs": [_image(size=4)]}, _prefixed(b"")
        ),
        Case(
            "v2_unknown_model",
            404,
            "model_not_found",
            content=b"{}",
            content_type=JSON,
            path="/v2/models/etc-passwd/infer",
        ),
    ]


def corpus() -> list[Case]:
    return [*_valid(), *_framing(), *_contents()]


def amplified_json(case: str) -> bytes:
    """A JSON body of tens of millions of tiny values, as the reviewer's 31 KB gzip was."""
    count = 10_000_000
    if case == "numbers":
        return (
            b'{"inputs":[{"name":"input","shape":[1],"datatype":"FP32","data":['
            + b"0," * (count - 1)
            + b"0]}]}"
        )
    if case == "empty_strings":
        return (
            b'{"inputs":[{"name":"image","shape":[1],"datatype":"BYTES","data":['
            + b'"",' * (count - 1)
            + b'""]}]}'
        )
    assert case == "nested_lists"
    return (
        b'{"inputs":[{"name":"input","shape":[1],"datatype":"FP32","data":'
        + b"[" * (count // 2)
        + b"]" * (count // 2)
        + b"}]}"
    )
