"""KServe's Python SDK gRPC client (`kserve.InferenceGRPCClient`, grpc-v2) against the
service: run by tests/test_kserve_client.py with the interpreter of the separate
virtualenv holding `kserve`. Imports only kserve, grpc, numpy and the standard library;
prints one JSON object.

    python tests/kserve_grpc_client.py HOST:PORT MODEL TENSOR.npy IMAGE
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import grpc
import numpy as np
from kserve import InferenceGRPCClient, InferInput, InferRequest
from kserve.protocol.infer_type import RequestedOutput


async def run(address: str, model: str, tensor_path: str, image_path: str) -> dict[str, Any]:
    client = InferenceGRPCClient(address, retries=0, timeout=60)
    found: dict[str, Any] = {
        "live": await client.is_server_live(),
        "ready": await client.is_server_ready(),
        "model_ready": await client.is_model_ready(model),
        "unknown_model_ready": await client.is_model_ready("no-such-model"),
    }
    x = np.load(tensor_path)
    for name, binary in (("logits", True), ("logits_typed", False)):
        tensor = InferInput("input", list(x.shape), "FP32")
        tensor.set_data_from_numpy(x, binary_data=binary)
        response = await client.infer(InferRequest(model, [tensor], request_id=f"kserve-{name}"))
        found[name] = response.outputs[0].as_numpy().tolist()
        found[f"{name}_id"] = response.id
    photo = Path(image_path).read_bytes()  # noqa: ASYNC240 (a small local file)
    image = InferInput("image", [1], "BYTES", data=[photo])  # typed: contents.bytes_contents
    wanted = RequestedOutput("logits", {"classification": 5})
    response = await client.infer(InferRequest(model, [image], request_outputs=[wanted]))
    strings = response.outputs[0].as_numpy().ravel()
    found["top5"] = [s.decode() if isinstance(s, bytes) else s for s in strings]
    try:
        await client.infer(InferRequest("no-such-model", [tensor]))
    except grpc.RpcError as exc:
        found["error_code"] = exc.code().name
        found["error"] = exc.details()
    await client.close()
    return found


if __name__ == "__main__":
    print(json.dumps(asyncio.run(run(*sys.argv[1:5]))))
