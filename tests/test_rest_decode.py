"""The v2 REST body decoder as a pure function: counts are checked before anything is
converted, inflating is bounded and held in the upload budget, nesting is capped."""

from __future__ import annotations

import base64
import gzip
import json
import time
import zlib

import numpy as np
import pytest

from app.budget import UploadBudget
from app.dataplane.oip import DecodeLimits
from app.errors import MalformedRequest, Overloaded, PayloadTooLarge
from app.web.v2.rest_decode import decode_request
from tests.hostile_v2 import amplified_json

LIMITS = DecodeLimits.for_model(8 * 1024 * 1024, max_batch_size=8, crop_size=224)


def request(data: object, datatype: str = "FP32", shape: list[int] | None = None) -> bytes:
    entry = {"name": "input", "shape": shape or [1], "datatype": datatype, "data": data}
    return json.dumps({"inputs": [entry]}).encode()


@pytest.mark.parametrize("case", ["numbers", "empty_strings", "nested_lists"])
@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
def test_amplifying_bodies_are_refused_before_parsing(case: str, encoding: str) -> None:
    raw = amplified_json(case)
    body = gzip.compress(raw) if encoding == "gzip" else zlib.compress(raw)
    assert len(body) < 100_000  # tens of kB sent
    started = time.process_time()
    with pytest.raises(PayloadTooLarge):  # the values, or the inflated size
        decode_request(body, None, encoding, LIMITS)
    assert time.process_time() - started < 2.0  # counted from bytes, never parsed


def test_inflated_bytes_are_held_in_the_upload_budget() -> None:
    raw = request(np.zeros(3 * 8 * 8).tolist(), shape=[1, 3, 8, 8])
    budget = UploadBudget(len(raw) - 1)
    with pytest.raises(Overloaded), budget.holding() as hold:
        decode_request(gzip.compress(raw), None, "gzip", LIMITS, hold)
    assert budget.held == 0
    with budget.holding() as hold:
        budget.limit_bytes = len(raw)
        decoded = decode_request(gzip.compress(raw), None, "gzip", LIMITS, hold)
        assert budget.held == len(raw)
    assert decoded.inputs[0].shape == (1, 3, 8, 8)


def test_inflating_stops_at_the_body_limit() -> None:
    small = DecodeLimits(body_bytes=1_000_000, json_values=LIMITS.json_values)
    held: list[int] = []
    with pytest.raises(PayloadTooLarge, match="inflates past the limit of 1000000"):
        decode_request(gzip.compress(b" " * 50_000_000), None, "gzip", small, held.append)
    assert sum(held) <= 1_000_000


def test_data_nesting_is_capped_at_the_dimensions_a_shape_may_have() -> None:
    nested: object = [b64 := base64.b64encode(b"x").decode()]
    for _ in range(9):
        nested = [nested]
    with pytest.raises(MalformedRequest, match="nests deeper than 8 levels"):
        decode_request(request(nested, "BYTES"), None, "", LIMITS)
    assert decode_request(request([[b64]], "BYTES", [1, 1]), None, "", LIMITS).inputs[0].elements


@pytest.mark.parametrize("length", ["\u00b2", "9" * 5000, "-1", " 12abc"])
def test_a_header_length_that_is_no_ascii_count_is_malformed(length: str) -> None:
    with pytest.raises(MalformedRequest, match="Inference-Header-Content-Length"):
        decode_request(request([0.0]), length, "", LIMITS)


def test_bytes_element_counts_are_checked_against_the_shape_first() -> None:
    with pytest.raises(MalformedRequest, match="at most 1024 BYTES elements"):
        decode_request(request([""] * 10, "BYTES", [2000]), None, "", LIMITS)
