"""The baseline a user would otherwise write: FastAPI + PyTorch eager, one request at a time.

Run: ``python -m bench.baseline_server --arch densenet121 --checkpoint W.pt --port 8001``

Same checkpoint and the same preprocessing as the service (torchvision's
``weights.transforms()`` on a Pillow image), no batching. The handler is ``async`` and runs
the model inline, so requests are served strictly one after another; the model itself uses
``--threads`` intra-op threads, like the service's ONNX Runtime session.
"""

from __future__ import annotations

import argparse
import io
import os
from pathlib import Path
from typing import Any

import torch
import uvicorn
from fastapi import FastAPI, Request
from PIL import Image
from torchvision.models import DenseNet121_Weights

from model_export.models import build


def create_app(arch: str, checkpoint: Path) -> FastAPI:
    model = build(arch)
    model.load_state_dict(torch.load(checkpoint, map_location="cpu", weights_only=True))
    model.eval()
    weights = DenseNet121_Weights.IMAGENET1K_V1  # recipe and class names only, no download
    transform = weights.transforms()
    labels = weights.meta["categories"]
    with torch.inference_mode():
        for _ in range(2):  # the first calls pick kernels and allocate: keep them out of requests
            model(torch.zeros(1, 3, 224, 224))
    app = FastAPI()

    @app.get("/health/ready")
    async def ready() -> dict[str, str]:
        return {"status": "ready"}

    @app.post("/classify")
    async def classify(request: Request) -> dict[str, Any]:
        data = await request.body()
        image = Image.open(io.BytesIO(data)).convert("RGB")
        with torch.inference_mode():
            probabilities = model(transform(image).unsqueeze(0)).softmax(dim=1)[0]
        top = probabilities.topk(5)
        return {
            "predictions": [
                {"label": labels[i], "class_index": i, "probability": p}
                for p, i in zip(top.values.tolist(), top.indices.tolist(), strict=True)
            ]
        }

    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.baseline_server", description=__doc__)
    parser.add_argument("--arch", default="densenet121")
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--threads", type=int, default=0, help="0 = the CPUs available")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads or len(os.sched_getaffinity(0)))
    app = create_app(args.arch, args.checkpoint)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
