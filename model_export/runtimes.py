"""Run an ONNX classifier in ONNX Runtime (CPU) or the OpenVINO runtime, at a set precision.

ONNX Runtime runs the graph as stored: an fp16 export computes in fp16 (its CPU provider
casts around the few kernels it lacks in fp16). OpenVINO compiles the same file for its
CPU plugin with ``INFERENCE_PRECISION_HINT``; it is always set, because OpenVINO's own
default on a CPU with AVX512-BF16 or AMX is already bf16, so "fp32" has to be asked for.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import onnx

from model_export import metadata as md
from model_export.errors import ExportError

Runtime = Literal["onnxruntime", "openvino"]
RUNTIMES: tuple[Runtime, ...] = ("onnxruntime", "openvino")
COMPUTE_PRECISIONS = ("fp32", "bf16", "fp16", "int8")
# OpenVINO's names for the hint, and the OPTIMIZATION_CAPABILITIES entry that says the
# CPU computes in that precision natively (without it the hint would be emulated or ignored).
# int8: a quantized file's own int8 layers, the rest in f32.
_OPENVINO_HINTS = {
    "fp32": ("f32", "FP32"),
    "bf16": ("bf16", "BF16"),
    "fp16": ("f16", "FP16"),
    "int8": ("f32", "INT8"),
}


@dataclass
class Runner:
    """One compiled model: ``run(batch)`` maps float32 NCHW to float32 logits."""

    runtime: Runtime
    precision: str
    run: Callable[[np.ndarray], np.ndarray]
    details: dict[str, Any]


def read_metadata(path: Path) -> dict[str, str]:
    """The model's metadata_props (the serving contract), read without running it."""
    if not path.is_file():
        raise ExportError(f"{path} does not exist")
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise ExportError(f"{path} is not a readable ONNX model: {exc}") from exc
    return {entry.key: entry.value for entry in proto.metadata_props}


def open_runner(
    path: Path, runtime: Runtime, precision: str | None = None, threads: int = 0
) -> Runner:
    """Load `path` in `runtime` computing at `precision` (None: as the file is stored;
    threads 0: the runtime's choice)."""
    stored = read_metadata(path).get(md.PRECISION, "fp32")
    if runtime == "onnxruntime":
        if precision not in (None, stored):
            raise ExportError(
                f"onnxruntime computes in the precision {path.name} is stored in ({stored}), "
                f"not {precision}: export with --precision {precision} or use the openvino "
                "runtime"
            )
        return _onnxruntime(path, stored, threads)
    return _openvino(path, precision or stored, threads)


def _onnxruntime(path: Path, precision: str, threads: int) -> Runner:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    try:
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise ExportError(f"{path} is not a loadable ONNX model: {exc}") from exc
    input_name = session.get_inputs()[0].name

    def run(batch: np.ndarray) -> np.ndarray:
        return np.asarray(session.run(None, {input_name: batch})[0], dtype=np.float32)

    details = {"version": ort.__version__, "providers": session.get_providers()}
    return Runner("onnxruntime", precision, run, details)


def _openvino(path: Path, precision: str, threads: int) -> Runner:
    try:
        import openvino as ov
    except ImportError as exc:
        raise ExportError(
            "the openvino runtime is not installed (pip install '.[openvino]')"
        ) from exc
    hint, capability = _OPENVINO_HINTS[precision]
    core = ov.Core()
    capabilities = list(core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
    if capability not in capabilities:
        raise ExportError(
            f"this CPU has no native {precision} in OpenVINO "
            f"(OPTIMIZATION_CAPABILITIES: {', '.join(capabilities)})"
        )
    config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": hint, "PERFORMANCE_HINT": "LATENCY"}
    if threads:
        config["INFERENCE_NUM_THREADS"] = threads
    try:
        compiled = core.compile_model(str(path), "CPU", config)
    except RuntimeError as exc:
        raise ExportError(f"OpenVINO cannot compile {path}: {exc}") from exc
    actual = compiled.get_property("INFERENCE_PRECISION_HINT").to_string()
    if actual != hint:
        raise ExportError(f"OpenVINO compiled {path.name} for {actual}, not {hint}")
    request = compiled.create_infer_request()
    output = compiled.output(0)

    def run(batch: np.ndarray) -> np.ndarray:
        return np.asarray(request.infer({0: batch})[output], dtype=np.float32)

    details = {
        "version": ov.get_version(),
        "inference_precision": actual,
        "cpu": str(core.get_property("CPU", "FULL_DEVICE_NAME")),
        "optimization_capabilities": capabilities,
    }
    return Runner("openvino", precision, run, details)
