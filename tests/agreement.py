"""Two precisions of one model compared over HTTP on real photos (bf16 and int8 tests)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from model_export.photos import bundled_photo_paths, load_rgb
from tests.conftest import serve, settings_for


def photo_jpegs() -> list[bytes]:
    """The real photos scikit-image and matplotlib ship, as JPEGs."""
    encoded = []
    for path in bundled_photo_paths():
        buffer = io.BytesIO()
        load_rgb(path).save(buffer, format="JPEG", quality=90)
        encoded.append(buffer.getvalue())
    return encoded


async def probabilities(settings_precision: str, model: Path, photos: list[bytes]) -> np.ndarray:
    """Every class's probability for each photo, classified over HTTP."""
    rows = []
    async with serve(settings_for(model, precision=settings_precision)) as (_, client):
        assert (await client.get("/model")).json()["precision"] == settings_precision
        for photo in photos:
            response = await client.post("/classify", files={"file": photo}, params={"top_k": 1000})
            assert response.status_code == 200, response.text
            row = np.zeros(1000)
            for p in response.json()["predictions"]:
                row[p["class_index"]] = p["probability"]
            rows.append(row)
    return np.stack(rows)
