"""Trace a module to ONNX, stamp the serving metadata, and check parity with PyTorch."""

from __future__ import annotations

import importlib.metadata
import json
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
import torchvision

from model_export import metadata as md
from model_export.errors import ExportError
from model_export.models import LoadedModel
from model_export.precision import Precision, parity_error, to_fp16

INPUT_NAME = "input"
OUTPUT_NAME = "logits"
DEFAULT_OPSET = 17


@dataclass
class ExportReport:
    path: Path
    precision: Precision
    max_abs_diff: float
    parity_error: float  # what the tolerance bounds: absolute (fp32) or relative (fp16)
    file_bytes: int
    parameters: int
    seconds: float


def serving_metadata(model: LoadedModel, precision: Precision) -> dict[str, str]:
    versions = {"torch": torch.__version__, "torchvision": torchvision.__version__}
    versions["onnx"] = onnx.__version__
    if precision == "fp16":
        versions["onnxconverter_common"] = importlib.metadata.version("onnxconverter-common")
    props = {
        **md.labels_to_metadata(model.labels),
        **model.recipe.to_metadata(),
        md.ARCH: model.arch,
        md.WEIGHTS: model.weights,
        md.WEIGHTS_SOURCE: model.weights_source,
        md.PRECISION: precision,
        md.EXPORTED_WITH: json.dumps(versions),
    }
    if model.weights_sha256:
        props[md.WEIGHTS_SHA256] = model.weights_sha256
    return props


def set_metadata(proto: onnx.ModelProto, props: dict[str, str]) -> None:
    """Write or overwrite metadata_props entries, leaving other keys alone."""
    existing = {entry.key: entry for entry in proto.metadata_props}
    for key, value in props.items():
        if key in existing:
            existing[key].value = value
        else:
            proto.metadata_props.add(key=key, value=value)


def trace_to_onnx(module: torch.nn.Module, path: Path, crop_size: int, opset: int) -> None:
    dummy = torch.zeros(2, 3, crop_size, crop_size)
    with warnings.catch_warnings():
        # The TorchScript exporter announces its deprecation in favour of dynamo=True,
        # which needs onnxscript and gives a larger graph for no gain here.
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            module,
            (dummy,),
            str(path),
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,
        )


def parity_logits(
    module: torch.nn.Module, path: Path, crop_size: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Logits of PyTorch eager (fp32) and of ONNX Runtime (CPU) on one seeded batch.

    The batch size (3) differs from the traced one (2), so the dynamic batch axis is
    exercised too.
    """
    generator = torch.Generator().manual_seed(seed)
    inputs = torch.randn(3, 3, crop_size, crop_size, generator=generator)
    with torch.no_grad():
        expected = module(inputs).numpy()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (actual,) = session.run(None, {INPUT_NAME: inputs.numpy()})
    return expected, np.asarray(actual)


def export(
    model: LoadedModel,
    output: Path,
    opset: int,
    tolerance: float,
    precision: Precision = "fp32",
) -> ExportReport:
    """Export, convert to the precision asked for, stamp metadata, verify against PyTorch
    fp32; the output only appears if parity holds."""
    if opset < DEFAULT_OPSET:
        raise ExportError(f"opset {opset} is too old; use {DEFAULT_OPSET} or newer")
    started = time.perf_counter()
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(output.name + ".partial")
    try:
        trace_to_onnx(model.module, partial, model.recipe.crop_size, opset)
        proto = onnx.load(str(partial))
        if precision == "fp16":
            proto = to_fp16(proto)
        set_metadata(proto, serving_metadata(model, precision))
        onnx.save(proto, str(partial))
        expected, actual = parity_logits(model.module, partial, model.recipe.crop_size, seed=0)
        error = parity_error(expected, actual, precision)
        if not error <= tolerance:
            raise ExportError(
                f"parity check failed: {describe_parity(precision, error)} > {tolerance:g}"
            )
        os.replace(partial, output)
    finally:
        partial.unlink(missing_ok=True)
    return ExportReport(
        path=output,
        precision=precision,
        max_abs_diff=float(np.max(np.abs(actual - expected))),
        parity_error=error,
        file_bytes=output.stat().st_size,
        parameters=sum(p.numel() for p in model.module.parameters()),
        seconds=time.perf_counter() - started,
    )


def describe_parity(precision: Precision, error: float) -> str:
    if precision == "fp32":
        return f"max |PyTorch - ONNX Runtime| = {error:.3g}"
    return f"max |PyTorch fp32 - ONNX Runtime {precision}| / max |logit| = {error:.3g}"
