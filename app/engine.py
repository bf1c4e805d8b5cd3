"""ONNX Runtime session: provider choice, model validation, warm-up, run(batch)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import onnxruntime as ort
from numpy.typing import NDArray

from app.errors import ModelLoadError
from app.model_spec import ModelSpec, describe

log = logging.getLogger(__name__)

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"


def resolve_providers(requested: list[str] | None) -> list[str]:
    available = ort.get_available_providers()
    if requested is None:
        return [CUDA, CPU] if CUDA in available else [CPU]
    missing = [p for p in requested if p not in available]
    if missing:
        raise ModelLoadError(
            f"execution provider(s) {missing} are not available; "
            f"this onnxruntime offers {available}"
        )
    return requested


class Engine:
    """One ONNX Runtime session. `run` is synchronous; callers serialize it."""

    def __init__(self, path: Path, providers: list[str] | None, intra_op_threads: int) -> None:
        if not path.is_file():
            raise ModelLoadError(f"model file {path} does not exist")
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.intra_op_num_threads = intra_op_threads
        options.inter_op_num_threads = 1
        chosen = resolve_providers(providers)
        try:
            self.session = ort.InferenceSession(str(path), options, providers=chosen)
        except Exception as exc:
            raise ModelLoadError(f"cannot load {path} as an ONNX model: {exc}") from exc
        in_use = self.session.get_providers()
        if providers is not None and [p for p in providers if p not in in_use]:
            raise ModelLoadError(f"requested providers {providers} but ONNX Runtime uses {in_use}")
        self.spec: ModelSpec = describe(
            self.session.get_inputs(),
            self.session.get_outputs(),
            dict(self.session.get_modelmeta().custom_metadata_map),
            fallback_name=path.stem,
        )
        self.providers: list[str] = list(in_use)

    def run(self, batch: NDArray[np.float32]) -> NDArray[np.float32]:
        """Logits [N, classes] for a batch [N, 3, H, W]."""
        (logits,) = self.session.run(None, {self.spec.input_name: batch})[:1]
        return np.asarray(logits, dtype=np.float32)

    def warm_up(self, runs: int, batch_size: int) -> None:
        """Run zeros through the model so the first requests do not pay for allocation.

        At least one run per size, whatever `runs` says: a model that loads but cannot run
        must fail here, before ready. On CUDA every batch size is warmed: cuDNN picks its
        algorithms per input shape.
        """
        crop = self.spec.recipe.crop_size
        largest = min(batch_size, self.spec.fixed_batch or batch_size)
        sizes = range(1, largest + 1) if CUDA in self.providers else sorted({1, largest})
        for size in sizes:
            batch = np.zeros((size, 3, crop, crop), dtype=np.float32)
            for _ in range(max(1, runs)):
                self.run(batch)
