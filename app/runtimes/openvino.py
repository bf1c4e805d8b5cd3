"""OpenVINO engine on the CPU: an fp32 ONNX file computed in bf16, or an int8 export.

The `openvino` runtime sits beside ONNX Runtime (the `onnxruntime-openvino` package would
replace onnxruntime with an older release). bf16: the fp32 file is compiled for the CPU
plugin with INFERENCE_PRECISION_HINT=bf16, and the hint is read back from the compiled
model. int8: a quantized (QuantizeLinear/DequantizeLinear) ONNX file from `model_export
quantize`, compiled with the f32 hint so that the few layers left unquantized stay exact;
the compiled model must run its convolutions in int8. A model that did not compile as asked
is refused, not served as something else. Labels and recipe come from the same ONNX
metadata, which OpenVINO reads as rt_info.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from app.errors import ModelLoadError
from app.model_spec import ModelSpec, describe
from app.precision import EngineChoice, Runtime, served_precision

log = logging.getLogger(__name__)

# Served precision -> OpenVINO's hint for the layers the file does not quantize itself.
_HINTS = {"bf16": "bf16", "fp32": "f32", "int8": "f32"}
_WEIGHTED_LAYERS = ("Convolution", "FullyConnected", "MatMul")
_ONNX_TYPES = {"f32": "tensor(float)", "f16": "tensor(float16)", "u8": "tensor(uint8)"}


@dataclass(frozen=True)
class _Tensor:
    """An OpenVINO port in the shape app.model_spec reads (ONNX Runtime's NodeArg)."""

    name: str
    type: str
    shape: list[int | str | None]


def _tensor(port: Any) -> _Tensor:
    dims = [d.get_length() if d.is_static else None for d in port.get_partial_shape()]
    kind = port.get_element_type().get_type_name()
    return _Tensor(port.get_any_name(), _ONNX_TYPES.get(kind, kind), dims)


def _metadata(model: Any) -> dict[str, str]:
    """The ONNX metadata_props, which OpenVINO's ONNX reader keeps under 'framework'."""
    if not model.has_rt_info(["framework"]):
        return {}
    return {key: value.astype(str) for key, value in model.get_rt_info()["framework"].items()}


def int8_layers(compiled: Any) -> tuple[int, int]:
    """(int8, all) weighted layers (convolutions, matmuls) in the compiled model."""
    int8 = weighted = 0
    for op in compiled.get_runtime_model().get_ops():
        info = op.get_rt_info()
        if info["layerType"].astype(str) in _WEIGHTED_LAYERS:
            weighted += 1
            int8 += info["runtimePrecision"].astype(str) in ("u8", "i8")
    return int8, weighted


class OpenVinoEngine:
    """One model compiled for OpenVINO's CPU plugin. `run` is synchronous."""

    runtime: Runtime = "openvino"
    warm_every_batch_size = False

    def __init__(self, path: Path, choice: EngineChoice, threads: int) -> None:
        if not path.is_file():
            raise ModelLoadError(f"model file {path} does not exist")
        try:
            import openvino as ov
        except ImportError as exc:
            raise ModelLoadError("the openvino package is not installed") from exc
        core = ov.Core()
        try:
            model = core.read_model(str(path))
        except Exception as exc:
            raise ModelLoadError(f"cannot load {path} as an ONNX model: {exc}") from exc
        self.spec: ModelSpec = describe(
            [_tensor(p) for p in model.inputs],
            [_tensor(p) for p in model.outputs],
            _metadata(model),
            fallback_name=path.stem,
        )
        self.precision = served_precision(choice, self.spec.precision)
        hint = _HINTS[self.precision]
        config = {
            "INFERENCE_PRECISION_HINT": hint,
            "PERFORMANCE_HINT": "LATENCY",  # one stream: batches run one at a time anyway
            "INFERENCE_NUM_THREADS": threads,
        }
        try:
            compiled = core.compile_model(model, "CPU", config)
        except Exception as exc:
            raise ModelLoadError(f"OpenVINO cannot compile {path}: {exc}") from exc
        actual = compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
        if actual != hint:
            raise ModelLoadError(f"OpenVINO compiled {path.name} for {actual}, not {hint}")
        int8, weighted = int8_layers(compiled)
        # What it actually compiled, for the start-up log: a file can be quantized only in part.
        self.compiled = f"{int8} of {weighted} convolution/matmul layers in int8"
        log.info("OpenVINO compiled %s for %s: %s", path.name, self.precision, self.compiled)
        if self.precision == "int8" and int8 == 0:
            raise ModelLoadError(
                f"OpenVINO compiled {path.name} with no layer in int8: it is not a quantized "
                "export (make one with `python -m model_export quantize`)"
            )
        self._request = compiled.create_infer_request()
        self.providers: list[str] = ["openvino:CPU"]

    def release_memory(self) -> None:
        """Nothing to do: OpenVINO frees a compiled model's memory with the model."""

    def run(self, batch: NDArray[np.float32]) -> NDArray[np.float32]:
        """Logits [N, classes] for a batch [N, 3, H, W] (the batch is read in place)."""
        self._request.infer({0: np.ascontiguousarray(batch)}, share_inputs=True)
        # A copy the caller owns: the request reuses its output buffer for the next batch.
        return np.array(self._request.get_output_tensor(0).data, dtype=np.float32, copy=True)
