"""End to end: probabilities served over HTTP equal PyTorch eager on the same checkpoint."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision.models import DenseNet, DenseNet121_Weights

from model_export.models import TINY_CONFIG
from tests import images
from tests.conftest import serve, settings_for


async def test_served_probabilities_equal_pytorch_eager(
    tiny_model: Path, tiny_checkpoint: Path
) -> None:
    model = DenseNet(num_classes=1000, **TINY_CONFIG).eval()
    model.load_state_dict(torch.load(tiny_checkpoint, weights_only=True))
    transform = DenseNet121_Weights.IMAGENET1K_V1.transforms()
    cases = images.cases()
    chosen = ["landscape_jpeg", "portrait_jpeg", "grayscale", "rgba", "cmyk_jpeg", "webp"]
    async with serve(settings_for(tiny_model, max_batch_delay_ms=20)) as (_, client):
        for name in chosen:
            data = cases[name]
            with torch.no_grad():
                rgb = Image.open(io.BytesIO(data)).convert("RGB")
                expected = torch.softmax(model(transform(rgb)[None]), dim=1)[0].numpy()
            response = await client.post(
                "/classify", params={"top_k": 1000}, files={"file": (name, data)}
            )
            assert response.status_code == 200
            served = np.zeros(1000)
            for p in response.json()["predictions"]:
                served[p["class_index"]] = p["probability"]
            assert np.max(np.abs(served - expected)) <= 1e-4, name
            assert int(np.argmax(served)) == int(np.argmax(expected))
