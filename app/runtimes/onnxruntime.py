"""ONNX Runtime engine: fp32 on the CPU, fp32 or fp16 (an fp16 export) on CUDA.

On CUDA every batch goes through an IOBinding with input and output buffers preallocated
on the GPU, one pair per batch size (warm-up allocates them all, with cuDNN's algorithm
search per shape): no allocation and no extra device synchronisation per batch, only the
host-to-device copy of the batch and the device-to-host copy of its logits.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from numpy.typing import NDArray

from app.errors import ModelLoadError
from app.model_spec import ModelSpec, describe
from app.precision import CUDA, EngineChoice, Runtime, served_precision

log = logging.getLogger(__name__)


_shared_arena: list[bool] = []  # registered once per process


def _share_cpu_arena() -> None:
    """One CPU memory arena for every session of the process. Each session's own arena
    keeps that model's peak activations for good; batches run one at a time (one
    inference device), so one arena serves them all: four DenseNets measured 1396 MB
    peak with an arena each, 844 MB sharing one (bench/results/repository.md)."""
    if not _shared_arena:
        info = ort.OrtMemoryInfo(
            "Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT
        )
        ort.create_and_register_allocator(info, ort.OrtArenaCfg(0, -1, -1, -1))
        _shared_arena.append(True)


def _session_options(threads: int) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    _share_cpu_arena()
    options.add_session_config_entry("session.use_env_allocators", "1")
    return options


def _provider_list(providers: tuple[str, ...], cudnn_conv_algo_search: str) -> list[Any]:
    """Provider names, CUDA with its options (the conv algorithm search is a setting)."""
    return [
        (p, {"cudnn_conv_algo_search": cudnn_conv_algo_search}) if p == CUDA else p
        for p in providers
    ]


class OnnxRuntimeEngine:
    """One ONNX Runtime session. `run` is synchronous; callers serialize it."""

    runtime: Runtime = "onnxruntime"

    def __init__(
        self,
        path: Path,
        choice: EngineChoice,
        intra_op_threads: int,
        cudnn_conv_algo_search: str = "EXHAUSTIVE",
    ) -> None:
        if not path.is_file():
            raise ModelLoadError(f"model file {path} does not exist")
        requested = _provider_list(choice.providers, cudnn_conv_algo_search)
        try:
            self.session = ort.InferenceSession(
                str(path), _session_options(intra_op_threads), providers=requested
            )
        except Exception as exc:
            raise ModelLoadError(f"cannot load {path} as an ONNX model: {exc}") from exc
        in_use = self.session.get_providers()
        if [p for p in choice.providers if p not in in_use]:
            raise ModelLoadError(
                f"requested providers {list(choice.providers)} but ONNX Runtime uses {in_use}"
            )
        self.spec: ModelSpec = describe(
            self.session.get_inputs(),
            self.session.get_outputs(),
            dict(self.session.get_modelmeta().custom_metadata_map),
            fallback_name=path.stem,
        )
        self.precision = served_precision(choice, self.spec.precision)
        self.providers: list[str] = list(in_use)
        self.warm_every_batch_size = CUDA in in_use
        self._bound = BoundBuffers(self.session, "cuda") if CUDA in in_use else None

    def run(self, batch: NDArray[np.float32]) -> NDArray[np.float32]:
        """Logits [N, classes] for a batch [N, 3, H, W]."""
        if self._bound is not None:
            return self._bound.run(batch)
        (logits,) = self.session.run(None, {self.spec.input_name: batch})[:1]
        return np.asarray(logits, dtype=np.float32)

    def release_memory(self) -> None:
        """A batch-1 run that shrinks the shared CPU arena when it ends: the arena keeps
        every chunk it ever grew to otherwise, so an unloaded model's weights and the
        largest activations would stay resident (bench/results/model-control.md)."""
        if self._bound is not None:
            return  # CUDA: ONNX Runtime's GPU arena is the session's own, freed with it
        options = ort.RunOptions()
        options.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
        crop = self.spec.recipe.crop_size
        zeros = np.zeros((1, 3, crop, crop), dtype=np.float32)
        self.session.run(None, {self.spec.input_name: zeros}, options)


@dataclass
class _Binding:
    binding: Any  # ort.IOBinding
    input: Any  # ort.OrtValue on the device
    output: Any


class BoundBuffers:
    """Preallocated device input/output buffers per batch size, bound to one session.

    `device` is "cuda" in the service; "cpu" runs the same code path where no GPU is.
    """

    def __init__(self, session: ort.InferenceSession, device: str, device_id: int = 0) -> None:
        self.session, self.device, self.device_id = session, device, device_id
        self.input_name = session.get_inputs()[0].name
        output = session.get_outputs()[0]
        self.output_name, self.classes = output.name, output.shape[1]
        self._by_size: dict[tuple[int, ...], _Binding] = {}

    def _allocate(self, shape: tuple[int, ...]) -> _Binding:
        def buffer(dims: tuple[int, ...]) -> Any:
            return ort.OrtValue.ortvalue_from_shape_and_type(
                dims, np.float32, self.device, self.device_id
            )

        entry = _Binding(self.session.io_binding(), buffer(shape), buffer((shape[0], self.classes)))
        entry.binding.bind_ortvalue_input(self.input_name, entry.input)
        entry.binding.bind_ortvalue_output(self.output_name, entry.output)
        self._by_size[shape] = entry
        log.debug("allocated %s buffers for batch shape %s", self.device, shape)
        return entry

    def run(self, batch: NDArray[np.float32]) -> NDArray[np.float32]:
        entry = self._by_size.get(batch.shape) or self._allocate(batch.shape)
        entry.input.update_inplace(np.ascontiguousarray(batch, dtype=np.float32))
        self.session.run_with_iobinding(entry.binding)
        # A copy the caller owns: on the CPU numpy() is a view of the reused buffer.
        return np.array(entry.output.numpy(), dtype=np.float32, copy=True)
