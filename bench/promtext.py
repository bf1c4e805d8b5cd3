"""Read the service's /metrics and turn two scrapes into per-step numbers."""

from __future__ import annotations

from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

# Samples the harness uses (histogram _sum/_count pairs and counters). The service labels
# them by model and version: the plain name holds the sum over every label set, and
# "NAME@MODEL" the one model's value (summed over its versions).
WANTED = (
    "classifier_batch_size_sum",
    "classifier_batch_size_count",
    "classifier_queue_wait_seconds_sum",
    "classifier_queue_wait_seconds_count",
    "classifier_inference_seconds_sum",
    "classifier_inference_seconds_count",
    "classifier_preprocess_seconds_sum",
    "classifier_preprocess_seconds_count",
    "classifier_images_classified_total",
)


async def scrape(client: httpx.AsyncClient, base_url: str) -> dict[str, float] | None:
    """The WANTED samples, or None where the server has no Prometheus /metrics."""
    try:
        response = await client.get(f"{base_url}/metrics", timeout=10.0)
    except httpx.HTTPError:
        return None
    if response.status_code != 200:
        return None
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            if sample.name not in WANTED:
                continue
            keys = [sample.name]
            if "model" in sample.labels:
                keys.append(f"{sample.name}@{sample.labels['model']}")
            for key in keys:
                values[key] = values.get(key, 0.0) + sample.value
    return values


def _mean(before: dict[str, float], after: dict[str, float], name: str) -> float | None:
    count = after.get(f"{name}_count", 0.0) - before.get(f"{name}_count", 0.0)
    if count <= 0:
        return None
    return (after.get(f"{name}_sum", 0.0) - before.get(f"{name}_sum", 0.0)) / count


def deltas(before: dict[str, float] | None, after: dict[str, float] | None) -> dict[str, Any]:
    """Mean batch size, queue wait, inference and preprocess time between two scrapes."""
    if before is None or after is None:
        return {}
    wait = _mean(before, after, "classifier_queue_wait_seconds")
    infer = _mean(before, after, "classifier_inference_seconds")
    prep = _mean(before, after, "classifier_preprocess_seconds")
    images = "classifier_images_classified_total"
    return {
        "mean_batch_size": _mean(before, after, "classifier_batch_size"),
        "mean_queue_wait_ms": None if wait is None else wait * 1000,
        "mean_batch_inference_ms": None if infer is None else infer * 1000,
        "mean_preprocess_ms": None if prep is None else prep * 1000,
        "images_classified": after.get(images, 0.0) - before.get(images, 0.0),
    }


def deltas_by_model(
    before: dict[str, float] | None, after: dict[str, float] | None
) -> dict[str, dict[str, Any]]:
    """`deltas` for each model that appears in the scrapes (a repository serves several)."""
    if before is None or after is None:
        return {}
    models = sorted({key.partition("@")[2] for key in after if "@" in key})
    return {
        model: deltas(
            {k.partition("@")[0]: v for k, v in before.items() if k.endswith(f"@{model}")},
            {k.partition("@")[0]: v for k, v in after.items() if k.endswith(f"@{model}")},
        )
        for model in models
    }
