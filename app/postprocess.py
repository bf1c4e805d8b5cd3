"""Logits -> probabilities -> top-k (class index, label, probability)."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray


def softmax(logits: NDArray[np.float32]) -> NDArray[np.float64]:
    """Softmax over the last axis, in float64 so small probabilities keep their digits."""
    shifted = logits.astype(np.float64) - np.max(logits, axis=-1, keepdims=True)
    exp = np.exp(shifted)
    result: NDArray[np.float64] = exp / np.sum(exp, axis=-1, keepdims=True)
    return result


def top_k(probabilities: NDArray[np.float64], k: int) -> list[tuple[int, float]]:
    """The k most probable classes, highest first; ties go to the lower class index."""
    k = min(k, probabilities.shape[-1])
    # A stable sort keeps equal probabilities in index order (argpartition does not).
    ordered = np.argsort(-probabilities, kind="stable")[:k]
    return [(int(i), float(probabilities[i])) for i in ordered]
