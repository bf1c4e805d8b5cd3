"""`tensors.InferenceResponse` -> an Open Inference Protocol HTTP/REST response body.

The response JSON object (KServe's v2 protocol, "Inference Response JSON Object"); outputs
asked for as binary (`binary_data` on the output, or `binary_data_output` on the request)
follow it as raw little-endian data, with `binary_data_size` on each and the JSON's size in
`Inference-Header-Content-Length` (Triton's "Binary Tensor Data Extension").
"""

from __future__ import annotations

from typing import Any

import pydantic_core

from app.dataplane.oip import InferenceResponse, OutputTensor, join_bytes, raw_bytes
from app.web.v2.rest_schema import HEADER_LENGTH


def _binary(output: OutputTensor) -> bytes:
    if output.elements is not None:
        return join_bytes(output.elements)
    assert output.array is not None
    return raw_bytes(output.array)


def _json_data(output: OutputTensor) -> list[Any]:
    if output.elements is not None:
        return [e.decode("utf-8", "replace") for e in output.elements]
    assert output.array is not None
    data: list[Any] = output.array.ravel().tolist()
    return data


def encode_response(response: InferenceResponse) -> tuple[bytes, dict[str, str]]:
    """The response body and headers: JSON, followed by binary outputs if any asked for it."""
    outputs, chunks = [], []
    for output in response.outputs:
        entry: dict[str, Any] = {
            "name": output.name,
            "datatype": output.datatype,
            "shape": list(output.shape),
        }
        if output.binary:
            chunks.append(_binary(output))
            entry["parameters"] = {"binary_data_size": len(chunks[-1])}
        else:
            entry["data"] = _json_data(output)
        outputs.append(entry)
    document: dict[str, Any] = {"model_name": response.model_name}
    document["model_version"] = response.model_version
    if response.id is not None:
        document["id"] = response.id
    document["outputs"] = outputs
    header = pydantic_core.to_json(document)
    if not chunks:
        return header, {"content-type": "application/json"}
    return b"".join([header, *chunks]), {
        "content-type": "application/octet-stream",
        HEADER_LENGTH: str(len(header)),
    }
