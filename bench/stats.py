"""Latency percentiles, the way every table in the results reports them."""

from __future__ import annotations

import numpy as np


def latency_summary(latencies_s: list[float]) -> dict[str, float | None]:
    """p50/p95/p99/max/mean in milliseconds (None for an empty list)."""
    if not latencies_s:
        return {"p50": None, "p95": None, "p99": None, "max": None, "mean": None}
    ms = np.asarray(latencies_s) * 1000.0
    p50, p95, p99 = np.percentile(ms, [50, 95, 99])
    return {
        "p50": float(p50),
        "p95": float(p95),
        "p99": float(p99),
        "max": float(ms.max()),
        "mean": float(ms.mean()),
    }
