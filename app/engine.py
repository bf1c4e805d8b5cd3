"""The engine interface every runtime implements, the factory that picks one, and warm-up.

An engine holds one loaded model and runs batches of it: `run(batch)` maps float32
[N, 3, H, W] to float32 logits [N, classes], whatever precision it computes in inside.
Implementations: `app.runtimes.onnxruntime` (CPU fp32, CUDA fp32/fp16) and
`app.runtimes.openvino` (CPU bf16). Which one serves is decided once, by `app.precision`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from app.config import Settings
from app.model_spec import ModelSpec
from app.precision import EngineChoice, Precision, Runtime


class Engine(Protocol):
    """One loaded model. `run` is synchronous; callers serialize it (one device thread)."""

    spec: ModelSpec
    runtime: Runtime
    precision: Precision  # what it computes in, as served (not only as stored)
    providers: list[str]  # where it runs: ONNX Runtime's providers, or "openvino:CPU"
    warm_every_batch_size: bool  # GPUs tune kernels per input shape

    def run(self, batch: NDArray[np.float32]) -> NDArray[np.float32]: ...

    def release_memory(self) -> None:
        """Give the runtime's free memory back to the system (after another model was
        unloaded); called on the inference device, like `run`."""


def open_engine(path: Path, choice: EngineChoice, settings: Settings) -> Engine:
    """Load `path` in the runtime `choice` names (imported here: openvino only when used)."""
    threads = settings.resolved_intra_op_threads()
    if choice.runtime == "openvino":
        from app.runtimes.openvino import OpenVinoEngine

        return OpenVinoEngine(path, choice, threads)
    from app.runtimes.onnxruntime import OnnxRuntimeEngine

    return OnnxRuntimeEngine(path, choice, threads, settings.cudnn_conv_algo_search)


def warm_up(engine: Engine, runs: int, batch_size: int) -> None:
    """Run zeros through the model so the first requests do not pay for allocation.

    At least one run per size, whatever `runs` says: a model that loads but cannot run
    must fail here, before ready. Every batch size where the engine tunes per shape (cuDNN
    picks its algorithms per input shape; the GPU buffers are allocated per size), else
    batch 1 and the largest.
    """
    crop = engine.spec.recipe.crop_size
    largest = min(batch_size, engine.spec.fixed_batch or batch_size)
    sizes = range(1, largest + 1) if engine.warm_every_batch_size else sorted({1, largest})
    for size in sizes:
        batch = np.zeros((size, 3, crop, crop), dtype=np.float32)
        for _ in range(max(1, runs)):
            engine.run(batch)
