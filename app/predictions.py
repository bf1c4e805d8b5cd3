"""What a pipeline answers: one input's row with where its time went, and one image's
top-k predictions."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray


@dataclass(frozen=True)
class Prediction:
    class_index: int
    label: str
    probability: float


@dataclass(frozen=True)
class Inferred:
    """One input's row of its batch's output, with where its time went."""

    output: NDArray[np.float32]
    queue_s: float
    preprocess_s: float
    inference_s: float


@dataclass(frozen=True)
class Classified:
    """One image's answer, with where its time went."""

    predictions: list[Prediction]
    queue_s: float
    preprocess_s: float
    inference_s: float
