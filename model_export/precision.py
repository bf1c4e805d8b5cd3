"""Precision variants of an exported graph, and how close each must stay to PyTorch fp32.

fp16 is made by converting the fp32 ONNX graph (weights and activations to float16, one
Cast at the input and one at the output) rather than by tracing a half-precision PyTorch
model: both agree with fp32 PyTorch equally well (max logit difference 2.1e-3 vs 2.0e-3 on
densenet121, random weights), but conversion takes 0.3 s instead of a second 9 s trace,
starts from the graph that already passed the fp32 parity check, and works on any ONNX
classifier. The input and output stay float32, so a client never sees the difference.
"""

from __future__ import annotations

import warnings
from typing import Literal

import numpy as np
import onnx

from model_export.errors import ExportError

Precision = Literal["fp32", "fp16"]
PRECISIONS: tuple[Precision, ...] = ("fp32", "fp16")

# fp32: the largest absolute logit difference; the service's exactness promise.
FP32_TOLERANCE = 1e-4
# fp16: the largest logit difference relative to the largest |logit|. float16 keeps 11
# significant bits (unit roundoff 4.9e-4); its error scales with the logits, so a fixed
# absolute bound would fail confident models and pass broken small-logit ones. Measured:
# 6.6e-4 on densenet121 (random weights), 5.6e-4 on densenet-tiny; 1e-2 leaves 15x
# headroom and still catches a wrong graph (another seed's model is off by 107%).
FP16_RELATIVE_TOLERANCE = 1e-2


def default_tolerance(precision: Precision) -> float:
    return FP32_TOLERANCE if precision == "fp32" else FP16_RELATIVE_TOLERANCE


def to_fp16(proto: onnx.ModelProto) -> onnx.ModelProto:
    """The same graph in float16, its input and output kept float32 by Cast nodes."""
    from onnxconverter_common import float16

    try:
        with warnings.catch_warnings():
            # It warns once per weight under 1e-7 in magnitude (below float16's normal range)
            # that it stores as 1e-7: harmless, and a DenseNet has thousands of them.
            warnings.filterwarnings("ignore", "the float32 number", UserWarning)
            converted: onnx.ModelProto = float16.convert_float_to_float16(proto, keep_io_types=True)
    except ValueError as exc:  # e.g. a graph that is float16 already
        raise ExportError(f"cannot convert the graph to fp16: {exc}") from exc
    return converted


def graph_precision(proto: onnx.ModelProto) -> Precision:
    """fp16 when the weights are stored as float16, else fp32 (for files made elsewhere)."""
    halves = sum(
        1 for init in proto.graph.initializer if init.data_type == onnx.TensorProto.FLOAT16
    )
    return "fp16" if halves > len(proto.graph.initializer) // 2 else "fp32"


def parity_error(expected: np.ndarray, actual: np.ndarray, precision: Precision) -> float:
    """The number compared with the tolerance: absolute for fp32, relative for fp16."""
    diff = float(np.max(np.abs(actual - expected)))
    if precision == "fp32":
        return diff
    return diff / max(float(np.max(np.abs(expected))), 1e-12)
