"""Request bodies the load generator sends, per kind: `classify` (a raw image/jpeg body to
POST /classify), `v2-image` (the same JPEG as a BYTES element of the Open Inference
Protocol, binary tensor data) and `v2-fp32` (the tensor the service would make of that JPEG,
as binary FP32: no decoding on the server). Both v2 kinds ask for the top 5 through the
classification extension, as binary data, so that only the input differs from /classify.
Everything is built before the load starts: the client's own work is sending bytes.
"""

from __future__ import annotations

import json
import struct
from typing import Any

import httpx
import numpy as np

from app.model_spec import Recipe
from app.preprocess import preprocess

KINDS = ("classify", "v2-image", "v2-fp32")
Request = tuple[bytes, dict[str, str]]  # body, headers


def _binary(header: dict[str, Any], data: bytes) -> Request:
    head = json.dumps(header).encode()
    headers = {
        "content-type": "application/octet-stream",
        "inference-header-content-length": str(len(head)),
    }
    return head + data, headers


def _recipe(model: dict[str, Any]) -> tuple[Recipe, bool]:
    p = model["preprocessing"]
    recipe = Recipe(
        p["resize_size"], p["crop_size"], p["interpolation"], tuple(p["mean"]), tuple(p["std"])
    )
    return recipe, bool(p["jpeg_draft"])


def prepare(kind: str, base_url: str, images: list[bytes]) -> tuple[str, list[Request]]:
    """The URL to post to and one request per image."""
    if kind == "classify":
        return f"{base_url}/classify", [(i, {"content-type": "image/jpeg"}) for i in images]
    model = httpx.get(f"{base_url}/model", timeout=30).json()
    name = model["name"]
    metadata = httpx.get(f"{base_url}/v2/models/{name}", timeout=30).json()
    top5 = [
        {
            "name": metadata["outputs"][0]["name"],
            "parameters": {"classification": 5, "binary_data": True},
        }
    ]
    url = f"{base_url}/v2/models/{name}/infer"
    if kind == "v2-image":
        requests = []
        for image in images:
            entry = {"name": "image", "shape": [1], "datatype": "BYTES"}
            entry["parameters"] = {"binary_data_size": len(image) + 4}
            framed = struct.pack("<I", len(image)) + image
            requests.append(_binary({"inputs": [entry], "outputs": top5}, framed))
        return url, requests
    if kind != "v2-fp32":
        raise ValueError(f"unknown request kind {kind!r}; choose from {KINDS}")
    recipe, draft = _recipe(model)
    requests = []
    for image in images:
        tensor = preprocess(image, recipe, 10**9, draft)[np.newaxis]
        entry = {
            "name": metadata["inputs"][0]["name"],
            "shape": list(tensor.shape),
            "datatype": "FP32",
            "parameters": {"binary_data_size": tensor.nbytes},
        }
        requests.append(_binary({"inputs": [entry], "outputs": top5}, tensor.tobytes()))
    return url, requests
