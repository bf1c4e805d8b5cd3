"""KServe's Python SDK REST client (`kserve.InferenceRESTClient`, v2 protocol) against the
service: run by tests/test_kserve_client.py with the interpreter of a separate virtualenv
holding `kserve` (it pins packages this project's environment has newer versions of).
Imports only kserve, numpy and the standard library; prints one JSON object.

    python tests/kserve_client.py URL MODEL TENSOR.npy IMAGE
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from kserve import InferenceRESTClient, InferInput, InferRequest, RESTConfig
from kserve.protocol.infer_type import RequestedOutput


async def run(url: str, model: str, tensor_path: str, image_path: str) -> dict[str, Any]:
    client = InferenceRESTClient(RESTConfig(protocol="v2", retries=0, timeout=60))
    found: dict[str, Any] = {
        "live": await client.is_server_live(url),
        "ready": await client.is_server_ready(url),
        "model_ready": await client.is_model_ready(url, model),
        "unknown_model_ready": await client.is_model_ready(url, "no-such-model"),
    }
    tensor = InferInput("input", [1, 3, 224, 224], "FP32")
    tensor.set_data_from_numpy(np.load(tensor_path), binary_data=True)
    request = InferRequest(model, [tensor], request_id="kserve-1")
    response = await client.infer(url, request, model_name=model)
    found["id"] = response.id
    found["logits"] = response.outputs[0].as_numpy().tolist()
    as_json = InferInput("input", [1, 3, 224, 224], "FP32")
    as_json.set_data_from_numpy(np.load(tensor_path), binary_data=False)
    response = await client.infer(url, InferRequest(model, [as_json]), model_name=model)
    found["logits_json"] = response.outputs[0].as_numpy().tolist()
    image = InferInput("image", [1], "BYTES")
    photo = Path(image_path).read_bytes()  # noqa: ASYNC240 (a small local file)
    image.set_data_from_numpy(np.array([photo], dtype=np.object_), binary_data=True)
    wanted = RequestedOutput("logits", {"classification": 5, "binary_data": True})
    request = InferRequest(model, [image], request_outputs=[wanted])
    response = await client.infer(url, request, model_name=model)
    strings = response.outputs[0].as_numpy().ravel()  # kserve decodes BYTES to str
    found["top5"] = [s.decode() if isinstance(s, bytes) else s for s in strings]
    try:
        await client.infer(url, InferRequest("no-such-model", [tensor]), model_name="no-such-model")
    except httpx.HTTPStatusError as exc:
        found["error_status"] = exc.response.status_code
        found["error"] = exc.response.json()["error"]
    await client.close()
    return found


if __name__ == "__main__":
    print(json.dumps(asyncio.run(run(*sys.argv[1:5]))))
